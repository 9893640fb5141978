"""One-off research studies: scripts that produced numbers the docs quote, kept to rerun them.

Not part of the installed package (``pip install aaren-rl`` carries what users run; these
folders stay in the repository). They import the product (``aaren_rl.*``) and the product
never imports them (``tests/test_layering.py``). Run them from the repository root::

    python -m studies.ablation --help        # the ablation grid (docs/research/recipe.md)
    python -m studies.recipe_choice --help   # the fixed rule that picks rows from an ablation
    python -m studies.loss_curves --help     # training-loss curves grouped by a config field

(``python studies/ablation.py`` works too.) Their tests are in ``tests/studies/``.
"""
