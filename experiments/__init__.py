"""The application: data-set loaders, the experiment runner and one module per experiment."""
