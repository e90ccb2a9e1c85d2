"""Pieces shared by the ops: the launch table (``config``), Triton building blocks (``triton_helpers``) and the
CPU interpreter's compatibility patch. Importing this package imports neither torch nor triton."""
