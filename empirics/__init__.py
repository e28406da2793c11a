"""coopsgd.empirics — torch side."""
