"""Plain nn.Module networks that map images to class logits."""
