"""The core of Tidal: plain Python with no I/O (components, props, state views,
policies). Stores and the executor do the I/O around it."""
