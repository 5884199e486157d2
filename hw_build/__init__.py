"""hw_build"""
