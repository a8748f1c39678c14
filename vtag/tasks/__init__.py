"""Layer 4, what a user asks for: training, metrics and evaluation, classification, batch tagging."""
