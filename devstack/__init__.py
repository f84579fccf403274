"""The stack, locally: moto stands in for AWS, and the handlers run as Lambda would run them.

Used by `make demo` and by the tests; never shipped to Lambda.
"""
