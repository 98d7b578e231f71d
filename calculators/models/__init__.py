"""Machine-learned models: the MACE committee, MACE training, the stand-in foundation."""
