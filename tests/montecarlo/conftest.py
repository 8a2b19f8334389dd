"""Registers the ``slow`` marker of the Monte Carlo tests (they still run by default)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a Monte Carlo ensemble of several seconds; runs by default")
