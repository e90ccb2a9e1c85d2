"""vimscope.tiling"""
