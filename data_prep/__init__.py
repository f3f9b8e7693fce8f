"""data_prep: the paper's fine-grained ImageNet32 sets from the official downloads.

Modules:
    groups   the six paper groups (wnid lists as data) and the ImageNet-1k class files
    sources  finding and reading the official files (pickled batches or .npz)
    build    streaming the files once and writing ``imagenet{S}-{group}.npz`` + manifest.json
    wordnet  ``--explain`` (where the groups come from in WordNet 3.0) and ``--hypernym``
    cli      ``python -m data_prep`` / ``dcc-prep``
"""

__version__ = "0.1.0"
