"""vimscope.cli"""
