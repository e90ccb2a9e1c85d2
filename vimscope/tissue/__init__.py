"""vimscope.tissue"""
