"""aiodicom's side-by-side benchmark: `python -m bench` (add `--quick` for the CI smoke run).

It starts every peer itself on 127.0.0.1 (aiodicom serve, DCMTK storescp/dcmqrscp, pynetdicom, Orthanc),
runs each scenario of issue 6 against all of them in one run, repeats each, prints min/median/max and
ratios, and writes bench/results/latest.json and latest.png. Nothing is installed at run time: the
README's test set-up (`bash tests/run.sh`) installs every peer and matplotlib.
"""
