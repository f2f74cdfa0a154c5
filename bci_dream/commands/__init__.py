"""The subcommands, one module each; every module has ``register(subparsers)``. Shared helpers are in
:mod:`bci_dream.commands.common`.

Modules here import only argparse and light bci_dream modules at load time and the heavy libraries (torch,
diffusers, Qt) inside their handlers, so that ``bci-dream devices`` stays instant.
"""

#: In the order ``bci-dream --help`` lists them.
COMMAND_MODULES = (
    "bci_dream.commands.streaming",
    "bci_dream.commands.dataset",
    "bci_dream.commands.pretrain",
    "bci_dream.commands.pairs",
    "bci_dream.commands.finetune",
    "bci_dream.commands.import_dreamdiffusion",
    "bci_dream.commands.evaluate",
    "bci_dream.commands.bank",
    "bci_dream.commands.run",
    "bci_dream.commands.render",
    "bci_dream.commands.models",
    "bci_dream.commands.app",
    "bci_dream.commands.calibrate",
    "bci_dream.commands.export",
)
