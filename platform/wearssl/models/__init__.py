"""Models: the harnet network, hand-crafted features, the forest, the HMM, weights resolution."""
