"""Example Tidal apps; ``tidal demo`` runs them."""
