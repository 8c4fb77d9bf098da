"""Stages 2-4: the toolchain found (toolchain.py), the plan of what to build with which flags
(plan.py), and the CMake/Ninja run (driver.py, with the CMake helpers in cmake/)."""
