"""The subcommands of the `featuremaps` command line, one module each (`featuremaps.cli.BUILTIN`
lists them); `_common` holds what they share and `inputs` the one input image that explain, show and
report look at. Nothing in this package imports `featuremaps.cli`."""
