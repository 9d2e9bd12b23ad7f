/// Winograd F(2×2, 3×3) convolution (Lavin & Gray, 2015): each 4×4 input tile gives a 2×2 output tile
/// with 16 multiplications per channel pair instead of 36, as 16 independent GEMMs
/// M_ξ (tiles × out) = V_ξ (tiles × in) · U_ξ (in × out), ξ = one of the 16 tile positions.
/// Transforms (B, G, A below) use only ±1 and ½, so they are exact in float; what differs from im2col
/// is summation order. Tensors are NHWC; all loops over channels are contiguous.
enum Winograd {
    /// Floats of V and M scratch per chunk of samples; a memory/speed knob.
    static let budget = 1 << 17

    /// U[ξ][in][out] = G · g · Gᵀ for every (out, in) filter of a PyTorch (OC, C, 3, 3) weight.
    /// `forInputGradient`: build the filters of the adjoint (full) convolution instead, whose
    /// inputs are the OC gradient channels and outputs the C input channels, kernels rotated 180°.
    static func transformFilters(_ w: UnsafePointer<Float>, outputChannels oc: Int, inputChannels c: Int,
                                 forInputGradient: Bool, into u: UnsafeMutablePointer<Float>) {
        let (ins, outs) = forInputGradient ? (oc, c) : (c, oc)
        for o in 0..<oc {
            for ci in 0..<c {
                let k = w + (o * c + ci) * 9
                var g = [Float](repeating: 0, count: 9)
                for i in 0..<9 { g[i] = forInputGradient ? k[8 - i] : k[i] }
                // G g : 4×3
                var gg = [Float](repeating: 0, count: 12)
                for j in 0..<3 {
                    let g0 = g[j], g1 = g[3 + j], g2 = g[6 + j]
                    gg[j] = g0
                    gg[3 + j] = 0.5 * (g0 + g1 + g2)
                    gg[6 + j] = 0.5 * (g0 - g1 + g2)
                    gg[9 + j] = g2
                }
                let (inIndex, outIndex) = forInputGradient ? (o, ci) : (ci, o)
                for i in 0..<4 {
                    let e0 = gg[i * 3], e1 = gg[i * 3 + 1], e2 = gg[i * 3 + 2]
                    let row = [e0, 0.5 * (e0 + e1 + e2), 0.5 * (e0 - e1 + e2), e2]
                    for j in 0..<4 { u[((i * 4 + j) * ins + inIndex) * outs + outIndex] = row[j] }
                }
            }
        }
    }

    struct Shape {
        var h, w, inputs, outputs, pad, oh, ow: Int
        var tilesH: Int { (oh + 1) / 2 }
        var tilesW: Int { (ow + 1) / 2 }
        var tilesPerSample: Int { tilesH * tilesW }
    }

    /// y (N, OH, OW, outputs) = conv(x (N, H, W, inputs), filters u, zero padding `pad`) + bias.
    static func convolve(_ x: UnsafePointer<Float>, batch n: Int, _ s: Shape, filters u: UnsafePointer<Float>,
                         bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>, scratch: Tensor) {
        let perSample = 16 * s.tilesPerSample * (s.inputs + s.outputs)
        let chunk = max(1, budget / perSample)
        // V and M for a chunk, then a zero row for padding, a sink row for cut-off outputs, and a zero bias
        let extra = s.inputs + 2 * s.outputs + 8
        scratch.resize([min(chunk, n) * perSample + extra])
        var n0 = 0
        while n0 < n {
            let n1 = min(n, n0 + chunk)
            let t = (n1 - n0) * s.tilesPerSample
            let v = scratch.data, m = v + 16 * t * s.inputs
            let zeros = m + 16 * t * s.outputs, sink = zeros + s.inputs, zeroBias = sink + s.outputs
            zeros.update(repeating: 0, count: s.inputs)
            zeroBias.update(repeating: 0, count: s.outputs + 8)
            transformInput(x, samples: n0..<n1, s, zeros: zeros, into: v)
            for xi in 0..<16 {
                GEMM.unpacked(transA: false, m: t, n: s.outputs, k: s.inputs,
                              a: v + xi * t * s.inputs, lda: s.inputs, b: u + xi * s.inputs * s.outputs, ldb: s.outputs,
                              beta: 0, c: m + xi * t * s.outputs, ldc: s.outputs)
            }
            transformOutput(m, samples: n0..<n1, s, bias: bias ?? UnsafePointer(zeroBias), into: y, sink: sink)
            n0 = n1
        }
    }

    /// The filter gradient of `convolve`: dU[ξ][out][in] = Σ_tiles (A dY Aᵀ)_ξ[tile][out] · V_ξ[tile][in],
    /// then `addFilterGradient` folds dU back to 3×3 kernels. (Forward is y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A,
    /// so dL/dg = Gᵀ[(Bᵀ d B) ⊙ (A dy Aᵀ)]G.) `gradU` holds 16 × outputs × inputs floats; out-major,
    /// because the kernel's 6-row tiles fit 64 output rows better than 32 input rows.
    static func filterGradient(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, batch n: Int, _ s: Shape,
                               into gradU: UnsafeMutablePointer<Float>, scratch: Tensor) {
        let perSample = 16 * s.tilesPerSample * (s.inputs + s.outputs)
        let chunk = max(1, budget / perSample)
        scratch.resize([min(chunk, n) * perSample + s.inputs])
        var n0 = 0
        while n0 < n {
            let n1 = min(n, n0 + chunk)
            let t = (n1 - n0) * s.tilesPerSample
            let v = scratch.data, dm = v + 16 * t * s.inputs
            let zeros = dm + 16 * t * s.outputs
            zeros.update(repeating: 0, count: s.inputs)
            transformInput(x, samples: n0..<n1, s, zeros: zeros, into: v)
            transformOutputGradient(dy, samples: n0..<n1, s, into: dm)
            for xi in 0..<16 {
                GEMM.unpacked(transA: true, m: s.outputs, n: s.inputs, k: t,
                              a: dm + xi * t * s.outputs, lda: s.outputs, b: v + xi * t * s.inputs, ldb: s.inputs,
                              beta: n0 == 0 ? 0 : 1, c: gradU + xi * s.inputs * s.outputs, ldc: s.inputs)
            }
            n0 = n1
        }
    }

    /// gw[out][in][3][3] += Gᵀ dU G, with Gᵀ = [1 ½ ½ 0; 0 ½ −½ 0; 0 ½ ½ 1]; gw in PyTorch layout.
    static func addFilterGradient(_ gradU: UnsafePointer<Float>, inputs c: Int, outputs oc: Int, into gw: UnsafeMutablePointer<Float>) {
        for o in 0..<oc {
            for ci in 0..<c {
                var u = [Float](repeating: 0, count: 16)
                for xi in 0..<16 { u[xi] = gradU[(xi * oc + o) * c + ci] }
                // Gᵀ u : 3×4
                var t = [Float](repeating: 0, count: 12)
                for j in 0..<4 {
                    let u0 = u[j], u1 = u[4 + j], u2 = u[8 + j], u3 = u[12 + j]
                    t[j] = u0 + 0.5 * (u1 + u2)
                    t[4 + j] = 0.5 * (u1 - u2)
                    t[8 + j] = 0.5 * (u1 + u2) + u3
                }
                let k = gw + (o * c + ci) * 9
                for i in 0..<3 {
                    let e0 = t[i * 4], e1 = t[i * 4 + 1], e2 = t[i * 4 + 2], e3 = t[i * 4 + 3]
                    k[i * 3] += e0 + 0.5 * (e1 + e2)
                    k[i * 3 + 1] += 0.5 * (e1 - e2)
                    k[i * 3 + 2] += 0.5 * (e1 + e2) + e3
                }
            }
        }
    }

    /// dM[ξ][tile][o] = (A e Aᵀ)[ξ] for each 2×2 output-gradient tile e (zeros past OH/OW),
    /// with A = [1 0; 1 1; 1 −1; 0 −1].
    static func transformOutputGradient(_ dy: UnsafePointer<Float>, samples: Range<Int>, _ s: Shape,
                                        into dm: UnsafeMutablePointer<Float>) {
        let oc = s.outputs, t = samples.count * s.tilesPerSample, stride = t * oc
        let vectorEnd = oc - oc % 8
        forEachOutputTile(samples, s) { tile, pixel, inX, inY in
            let p00 = dy + pixel
            let out = dm + tile * oc
            var o = 0
            @inline(__always) func tileAt(_ o: Int, _ e00: Lanes, _ e01: Lanes, _ e10: Lanes, _ e11: Lanes,
                                          _ store: (Lanes, UnsafeMutablePointer<Float>) -> Void) {
                // A e has rows (e0, e0+e1, e0−e1, −e1), each a 2-vector; then each row times Aᵀ
                @inline(__always) func row(_ i: Int, _ f0: Lanes, _ f1: Lanes) {
                    let base = out + o + i * 4 * stride
                    store(f0, base)
                    store(f0 + f1, base + stride)
                    store(f0 - f1, base + 2 * stride)
                    store(-f1, base + 3 * stride)
                }
                row(0, e00, e01)
                row(1, e00 + e10, e01 + e11)
                row(2, e00 - e10, e01 - e11)
                row(3, -e10, -e11)
            }
            while o < vectorEnd {
                let e00 = load(p00 + o)
                let e01 = inX ? load(p00 + oc + o) : .zero
                let e10 = inY ? load(p00 + s.ow * oc + o) : .zero
                let e11 = inX && inY ? load(p00 + (s.ow + 1) * oc + o) : .zero
                tileAt(o, e00, e01, e10, e11, store)
                o += 8
            }
            while o < oc {
                let e00 = Lanes(repeating: p00[o])
                let e01 = Lanes(repeating: inX ? p00[oc + o] : 0)
                let e10 = Lanes(repeating: inY ? p00[s.ow * oc + o] : 0)
                let e11 = Lanes(repeating: inX && inY ? p00[(s.ow + 1) * oc + o] : 0)
                tileAt(o, e00, e01, e10, e11, { v, p in p.pointee = v[0] })
                o += 1
            }
        }
    }

    /// Calls `body(tile, pixel, inX, inY)` for every 2×2 output tile of `samples` in tile order: `pixel`
    /// is the float offset of the tile's top-left output pixel in an (N, OH, OW, outputs) tensor;
    /// `inX`/`inY` say whether its right column and bottom row exist (odd OW/OH cut them off).
    @inline(__always)
    static func forEachOutputTile(_ samples: Range<Int>, _ s: Shape, _ body: (_ tile: Int, _ pixel: Int, _ inX: Bool, _ inY: Bool) -> Void) {
        var tile = 0
        for n in samples {
            for ti in 0..<s.tilesH {
                for tj in 0..<s.tilesW {
                    let oy = 2 * ti, ox = 2 * tj
                    body(tile, ((n * s.oh + oy) * s.ow + ox) * s.outputs, ox + 1 < s.ow, oy + 1 < s.oh)
                    tile += 1
                }
            }
        }
    }

    typealias Lanes = SIMD8<Float>

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> Lanes { UnsafeRawPointer(p).loadUnaligned(as: Lanes.self) }
    @inline(__always) static func store(_ v: Lanes, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: Lanes.self) }

    /// V[ξ][tile][c] = (Bᵀ d B)[ξ] with Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1], eight channels at a
    /// time. `zeros` (≥ inputs floats of 0) stands in for pixels outside the image.
    static func transformInput(_ x: UnsafePointer<Float>, samples: Range<Int>, _ s: Shape,
                               zeros: UnsafePointer<Float>, into v: UnsafeMutablePointer<Float>) {
        let c = s.inputs, t = samples.count * s.tilesPerSample, stride = t * c
        let vectorEnd = c - c % 8
        var tile = 0
        var src = [UnsafePointer<Float>](repeating: zeros, count: 16)
        for n in samples {
            let image = x + n * s.h * s.w * c
            for ti in 0..<s.tilesH {
                for tj in 0..<s.tilesW {
                    let y0 = 2 * ti - s.pad, x0 = 2 * tj - s.pad
                    for i in 0..<4 {
                        for j in 0..<4 {
                            let yy = y0 + i, xx = x0 + j
                            src[i * 4 + j] = yy >= 0 && yy < s.h && xx >= 0 && xx < s.w ? image + (yy * s.w + xx) * c : zeros
                        }
                    }
                    let out = v + tile * c
                    src.withUnsafeBufferPointer { d in
                        var ch = 0
                        while ch < vectorEnd {
                            transformTile(d, ch, out + ch, stride, load, store)
                            ch += 8
                        }
                        while ch < c {
                            transformTile(d, ch, out + ch, stride, { Lanes(repeating: $0.pointee) }, { v, p in p.pointee = v[0] })
                            ch += 1
                        }
                    }
                    tile += 1
                }
            }
        }
    }

    @inline(__always)
    private static func transformTile(_ d: UnsafeBufferPointer<UnsafePointer<Float>>, _ ch: Int, _ out: UnsafeMutablePointer<Float>, _ stride: Int,
                                      _ load: (UnsafePointer<Float>) -> Lanes, _ store: (Lanes, UnsafeMutablePointer<Float>) -> Void) {
        // columns of Bᵀ d: c_j = (row 0, row 1, row 2, row 3) of column j
        @inline(__always) func col(_ j: Int) -> (Lanes, Lanes, Lanes, Lanes) {
            let d0 = load(d[j] + ch), d1 = load(d[4 + j] + ch), d2 = load(d[8 + j] + ch), d3 = load(d[12 + j] + ch)
            return (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
        }
        // (Bᵀ d) B, one row of Bᵀ d at a time
        @inline(__always) func row(_ i: Int, _ e0: Lanes, _ e1: Lanes, _ e2: Lanes, _ e3: Lanes) {
            let base = out + i * 4 * stride
            store(e0 - e2, base)
            store(e1 + e2, base + stride)
            store(e2 - e1, base + 2 * stride)
            store(e1 - e3, base + 3 * stride)
        }
        let c0 = col(0), c1 = col(1), c2 = col(2), c3 = col(3)
        row(0, c0.0, c1.0, c2.0, c3.0)
        row(1, c0.1, c1.1, c2.1, c3.1)
        row(2, c0.2, c1.2, c2.2, c3.2)
        row(3, c0.3, c1.3, c2.3, c3.3)
    }

    /// y = Aᵀ m A (+ bias) with Aᵀ = [1 1 1 0; 0 1 −1 −1], eight channels at a time; outputs past
    /// OH/OW go to `sink` (≥ outputs floats).
    static func transformOutput(_ m: UnsafePointer<Float>, samples: Range<Int>, _ s: Shape, bias: UnsafePointer<Float>,
                                into y: UnsafeMutablePointer<Float>, sink: UnsafeMutablePointer<Float>) {
        let oc = s.outputs, t = samples.count * s.tilesPerSample, stride = t * oc
        let vectorEnd = oc - oc % 8
        forEachOutputTile(samples, s) { tile, pixel, inX, inY in
            let p00 = y + pixel
            let p01 = inX ? p00 + oc : sink
            let p10 = inY ? p00 + s.ow * oc : sink
            let p11 = inX && inY ? p00 + (s.ow + 1) * oc : sink
            let src = m + tile * oc
            var o = 0
            while o < vectorEnd {
                outputTile(src + o, stride, bias + o, p00 + o, p01 + o, p10 + o, p11 + o, load, store)
                o += 8
            }
            while o < oc {
                outputTile(src + o, stride, bias + o, p00 + o, p01 + o, p10 + o, p11 + o,
                           { Lanes(repeating: $0.pointee) }, { v, p in p.pointee = v[0] })
                o += 1
            }
        }
    }

    @inline(__always)
    private static func outputTile(_ src: UnsafePointer<Float>, _ stride: Int, _ bias: UnsafePointer<Float>,
                                   _ p00: UnsafeMutablePointer<Float>, _ p01: UnsafeMutablePointer<Float>,
                                   _ p10: UnsafeMutablePointer<Float>, _ p11: UnsafeMutablePointer<Float>,
                                   _ load: (UnsafePointer<Float>) -> Lanes, _ store: (Lanes, UnsafeMutablePointer<Float>) -> Void) {
        @inline(__always) func v(_ i: Int, _ j: Int) -> Lanes { load(src + (i * 4 + j) * stride) }
        // rows of Aᵀ m
        let a0 = v(0, 0) + v(1, 0) + v(2, 0), a1 = v(0, 1) + v(1, 1) + v(2, 1)
        let a2 = v(0, 2) + v(1, 2) + v(2, 2), a3 = v(0, 3) + v(1, 3) + v(2, 3)
        let b0 = v(1, 0) - v(2, 0) - v(3, 0), b1 = v(1, 1) - v(2, 1) - v(3, 1)
        let b2 = v(1, 2) - v(2, 2) - v(3, 2), b3 = v(1, 3) - v(2, 3) - v(3, 3)
        let bo = load(bias)
        store(b1 - b2 - b3 + bo, p11)
        store(b0 + b1 + b2 + bo, p10)
        store(a1 - a2 - a3 + bo, p01)
        store(a0 + a1 + a2 + bo, p00)
    }
}
