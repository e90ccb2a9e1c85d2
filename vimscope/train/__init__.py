"""vimscope.train"""
