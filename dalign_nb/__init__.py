"""dalign-nb: a notebook-first reproduction of *Understanding Deformable Alignment in
Video Super-Resolution* (Chan, Wang, Yu, Dong, Loy; AAAI 2021).

The package backs the notebooks in ``notebooks/``; one module per concept of the paper
(see the package map in the README).
"""

__version__ = "0.1.0"
