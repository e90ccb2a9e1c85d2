"""vimscope.io"""
