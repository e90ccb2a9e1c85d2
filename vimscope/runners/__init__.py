"""vimscope.runners"""
