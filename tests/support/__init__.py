"""Test helpers shared by the unit, integration and interop suites."""
