"""The training loop and what it uses: callbacks, optimizers, losses, metrics, device."""
