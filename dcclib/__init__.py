"""dcclib: Dataset Condensation with Contrastive Signals (Lee et al., ICML 2022), on one GPU.

Modules, one per concept:
    data      named datasets, image folders, ImageNet32 subsets, the embedded offline MNIST
    models    the network registry (ConvNet and its variants, MLP, LeNet, AlexNet, VGG11, ResNet18)
    augment   DSA (differentiable Siamese augmentation) and DC's evaluation augmentation
    matching  gradient distances and the DC / DCC matching losses
    condense  Algorithm 1 with the bi-level warm-up, checkpoints and resume
    evaluate  the evaluation protocol (fresh networks trained on the synthetic set)
    io        saving and loading synthetic sets (safetensors + JSON metadata)
    batched   many evaluation networks trained together
    profiles  smoke | quick | paper
    store, experiments, views, reports   the results store and the notebooks' glue
    paper_results   the paper's numbers, as data
    motivating, selection, kip, kernel_velocity, alignment, continual   the paper's analyses
    cli       the `dcc` command
"""

__version__ = "0.1.0"
