# The repository root is a ComfyUI pack (its __init__.py imports ``.nodes`` relatively): pytest must
# not import it as a test module when the checkout folder is not a valid package name.
collect_ignore = ["__init__.py"]
