"""Scripts run in a separate interpreter (the one with TensorFlow), printing JSON.

They are run as files, not imported, so that a crash or a slow framework import never
touches the driver's process."""
