"""Figures, one module per family; :mod:`.style` holds what they share (saving, markers,
label placement)."""
