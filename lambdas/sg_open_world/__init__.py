"""AWS Config custom rule: security groups open to the whole internet."""
