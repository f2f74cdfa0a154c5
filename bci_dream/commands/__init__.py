"""Subcommands beyond streaming, one module each; every module has ``register(subparsers)``.

Modules here import only argparse at load time and the heavy libraries (torch, diffusers) inside
their handlers, so that ``bci-dream devices`` stays instant.
"""

COMMAND_MODULES = (
    "bci_dream.commands.pretrain",
    "bci_dream.commands.pairs",
    "bci_dream.commands.finetune",
    "bci_dream.commands.import_dreamdiffusion",
    "bci_dream.commands.evaluate",
    "bci_dream.commands.run",
    "bci_dream.commands.models",
    "bci_dream.commands.app",
    "bci_dream.commands.calibrate",
)
