"""The trainer's parts; ``dalign_nb.train`` puts them together (``train(profile, out_dir)``).

* ``checkpoint``: checkpoints and RNG states, written with ``dalign_nb.io.atomic_write``;
* ``schedule``: cosine annealing with restarts (BasicSR's), rebuilt at a restored iteration;
* ``order``: the data order, a function of (seed, iteration) -- exact resume, disjoint DDP ranks;
* ``monitor``: the offset monitor (mean / max |offset| per level, overflow);
* ``objective``: the weighted terms of the training loss (``loss_terms``) and how hard each pulls
  on the offset branches (``term_gradients``);
* ``processes``: DDP process group, device choice, stop requests (signals);
* ``validation``: which models take flows, the training and validation data, ``evaluate``.
"""
