"""vimscope.models"""
