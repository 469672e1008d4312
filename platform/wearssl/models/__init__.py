"""Models: the harnet network, the exported-model contract, hand-crafted features, the forest,
the HMM, weights resolution."""
