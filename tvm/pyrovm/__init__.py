"""The worker: sandboxes, drivers, images, the in-sandbox agent."""
