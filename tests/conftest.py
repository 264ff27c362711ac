def pytest_addoption(parser):
    parser.addoption("--rewrite", action="store_true", help="regenerate golden scenario traces")
