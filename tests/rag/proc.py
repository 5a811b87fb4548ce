"""A second process for the multi-process tests:
``python -m tests.rag.proc MODE DB_DIR``.

``index``: opens the app and the index, inserts 200 documents and indexes
them slowly (the test kills it with SIGKILL midway). ``insert``: inserts a
document every 50 ms, printing each id once it is committed (indexing is
left to the other process)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.rag.common import CountingEmbedder, Doc, make_app
from tidal import rag


class SlowEmbedder(CountingEmbedder):
    def embed(self, texts):  # type: ignore[no-untyped-def]
        time.sleep(0.02)
        return super().embed(texts)


def main(mode: str, where: str) -> None:
    app = make_app(Path(where))
    if mode == "index":
        rag.Index(app, "docs", source=Doc, text=lambda d: f"{d.title}\n{d.body}", embedder=SlowEmbedder())
        for i in range(200):
            app.insert(Doc(title=f"doc {i}", body=f"body number {i} " * 30))
        print("inserted", flush=True)
        time.sleep(60)
    elif mode == "insert":
        for i in range(20):
            doc = app.insert(Doc(title=f"fresh {i}", body=f"zebra{i} quokka"))
            print(doc.id, flush=True)
            time.sleep(0.05)
        app.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
