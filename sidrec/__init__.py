"""sidrec: generative recommendation with semantic IDs.

Stages (one subpackage each): ``data`` -> ``semantics`` -> ``quantize`` -> ``align`` -> ``train`` ->
``decode``, plus ``baselines`` and ``eval``. See the README and DESIGN for the run-directory contract.
"""

__version__ = "0.1.0"
