#!/usr/bin/env python3
"""Coefficients of the fast GELU in lib/kernels/quantize_f32.c (gelu_fast_coef).

GELU(y) = y Phi(y) on [-8, 8) in 32 pieces of width 1/2, each a quartic in u = y minus
the piece's centre, interpolating GELU at the Chebyshev nodes of the piece (close to
the best uniform fit), rounded to float. Prints the C table and the largest error of
its float Horner evaluation on a grid. Needs python3-mpmath (Debian).
Usage: python3 scripts/fit_gelu_fast.py
"""
import struct

import mpmath as mp

mp.mp.dps = 30
LO, WIDTH, PIECES, DEGREE = -8.0, 0.5, 32, 4


def gelu(x):
    return x * mp.ncdf(x)


def f32(v):
    return struct.unpack("f", struct.pack("f", float(v)))[0]


def fit():
    table = []
    for i in range(PIECES):
        centre = LO + i * WIDTH + WIDTH / 2
        nodes = [(WIDTH / 2) * mp.cos(mp.pi * (2 * k + 1) / (2 * (DEGREE + 1))) for k in range(DEGREE + 1)]
        a = mp.matrix([[u ** j for j in range(DEGREE + 1)] for u in nodes])
        b = mp.matrix([gelu(centre + u) for u in nodes])
        coef = mp.lu_solve(a, b)
        table.append([f32(coef[j]) for j in range(DEGREE + 1)])
    return table


def worst(table, samples=40000):
    err = 0.0
    for s in range(samples):
        y = f32(LO + PIECES * WIDTH * (s + 0.5) / samples)
        i = int((y - LO) / WIDTH)
        u = f32(y - f32(LO + i * WIDTH + WIDTH / 2))
        p = table[i][DEGREE]
        for j in range(DEGREE - 1, -1, -1):
            p = f32(p * u + table[i][j])
        err = max(err, abs(p - float(gelu(y))))
    return err


def main():
    table = fit()
    print("static const float gelu_fast_coef[%d][%d] = {" % (DEGREE + 1, PIECES))
    for j in range(DEGREE + 1):
        vals = ["%.9ef" % table[i][j] for i in range(PIECES)]
        rows = [", ".join(vals[k:k + 4]) for k in range(0, PIECES, 4)]
        print("    {" + ",\n     ".join(rows) + "},")
    print("};")
    print("/* largest error on the grid: %.3g */" % worst(table))


if __name__ == "__main__":
    main()
