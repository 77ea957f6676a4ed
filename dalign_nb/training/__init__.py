"""The trainer's parts; ``dalign_nb.train`` puts them together (``train(profile, out_dir)``).

* ``checkpoint``: atomic file writes (shared with the clip cache), checkpoints, RNG states;
* ``schedule``: cosine annealing with restarts (BasicSR's), rebuilt at a restored iteration;
* ``order``: the data order, a function of (seed, iteration) -- exact resume, disjoint DDP ranks;
* ``monitor``: the offset monitor (mean / max |offset| per level, overflow);
* ``processes``: DDP process group, device choice, stop requests (signals);
* ``validation``: which models take flows, the training and validation data, ``evaluate``.

This package imports nothing at its top, so that ``dalign_nb.data`` can use ``checkpoint``.
"""
