"""vimscope.pipeline"""
