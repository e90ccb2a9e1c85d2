"""The kernel of ``check`` (``check_jpeg``): walks the Huffman-coded data of one sequential JPEG scan.

Plain Python, written so that numba can compile it unchanged: ``check`` runs it interpreted for the first
few tiles (loading numba costs about 1.5 s, more than checking a thumbnail's tiles) and compiled once a process
checks many. Tables are flat (slot * stride + index) so Python lists and numpy arrays both work.
"""

from __future__ import annotations

import numpy as np

_MASK = (1 << 56) - 1  # the bit buffer keeps at most 56 valid bits


def walk(data, pos, blocks, dc, ac, dcmax, total_mcus, restart, maxcode, valptr, mincode, huffval, lut, defined):
    """(status, position of the marker after the scan); status 0 means clean (codes in ``check._MESSAGES``).

    ``dcmax[c]``: largest |quantised DC| a conforming encoder can write for scan component c (0: unchecked).
    """
    n = len(data)
    for c in range(len(blocks)):
        if not defined[dc[c]] or not defined[ac[c]]:
            return 6, pos
    buf = 0
    cnt = 0
    stopped = False
    expected_rst = 0
    ncomp = len(blocks)
    pred = np.zeros(ncomp, np.int64)  # DC predictors
    for mcu in range(total_mcus + 1):
        if mcu == total_mcus or (restart > 0 and mcu > 0 and mcu % restart == 0):
            # byte-align; whole bytes still buffered or before the marker are extraneous
            extra = cnt // 8
            buf = 0
            cnt = 0
            while pos < n:
                if data[pos] == 0xFF:
                    q = pos + 1
                    while q < n and data[q] == 0xFF:
                        q += 1
                    if q >= n:
                        pos = n
                        break
                    if data[q] != 0:
                        break
                    extra += 2
                    pos = q + 1
                else:
                    extra += 1
                    pos += 1
            stopped = False
            if extra > 0:
                return 3, pos
            if pos + 1 >= n:
                return 5, pos
            if mcu == total_mcus:
                return 0, pos
            if data[pos + 1] != 0xD0 + expected_rst:
                return 4, pos
            pos += 2
            expected_rst = (expected_rst + 1) & 7
            pred[:] = 0
        for c in range(ncomp):
            dslot = dc[c]
            aslot = ac[c]
            for _ in range(blocks[c]):
                k = 0
                while k < 64:
                    slot = dslot if k == 0 else aslot
                    # refill
                    if cnt < 32 and not stopped:
                        while cnt <= 48:
                            if pos >= n:
                                stopped = True
                                break
                            b = data[pos]
                            if b != 0xFF:
                                buf = ((buf << 8) | b) & _MASK
                                cnt += 8
                                pos += 1
                            else:
                                q = pos + 1
                                while q < n and data[q] == 0xFF:
                                    q += 1
                                if q < n and data[q] == 0:
                                    buf = ((buf << 8) | 0xFF) & _MASK
                                    cnt += 8
                                    pos = q + 1
                                else:
                                    stopped = True
                                    break
                    e = 0
                    if cnt >= 9:
                        e = lut[slot * 512 + ((buf >> (cnt - 9)) & 511)]
                    if e:
                        cnt -= e >> 8
                        sym = e & 255
                    else:
                        code = 0
                        length = 0
                        sym = -1
                        while length < 16:
                            if cnt == 0:
                                return 2, pos
                            cnt -= 1
                            code = (code << 1) | ((buf >> cnt) & 1)
                            length += 1
                            if code <= maxcode[slot * 17 + length]:
                                index = valptr[slot * 17 + length] + code - mincode[slot * 17 + length]
                                sym = huffval[slot * 256 + index]
                                break
                        if sym < 0:
                            return 1, pos
                    if k == 0:
                        s = sym
                        k = 1
                        if s:
                            if s > 16 or cnt < s:
                                return 2, pos
                            cnt -= s
                            v = (buf >> cnt) & ((1 << s) - 1)
                            if v < (1 << (s - 1)):
                                v -= (1 << s) - 1
                            pred[c] += v
                            if dcmax[c] and abs(pred[c]) > dcmax[c]:
                                return 7, pos
                        continue
                    else:
                        r = sym >> 4
                        s = sym & 15
                        if s == 0:
                            if r != 15:
                                break
                            k += 16
                            continue
                        k += r + 1
                    if s:
                        if cnt < s:
                            # s <= 16 and the refill keeps >= 32 bits unless the data stopped
                            return 2, pos
                        cnt -= s
    return 0, pos
