"""The deploy order as data (`plan`), read against the synthesized cloud assembly (`assembly`, `check`)."""
