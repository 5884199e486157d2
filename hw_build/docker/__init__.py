"""FINN's full flow in a Docker image of the pinned toolchain, with the user's Vivado mounted."""
