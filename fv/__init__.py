"""The classical pipeline: dense SIFT, PCA/RootSIFT, diagonal GMM, Fisher vectors, linear SVM.

A library: no command line and no knowledge of data sets (those live in ``experiments``).
"""
