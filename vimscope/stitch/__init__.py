"""vimscope.stitch"""
