"""vimscope.writers"""
