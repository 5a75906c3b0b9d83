"""Inference backends behind one small interface (`Backend`), one file each; heavy imports inside them."""
