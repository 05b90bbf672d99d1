// 8-bit single-channel PNG: encode a mask of class ids, decode a pre-label. No library, no build step:
// zlib comes from the browser's CompressionStream / DecompressionStream ("deflate" = zlib format).

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

async function pipe(bytes, stream) {
  const out = new Blob([bytes]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(out).arrayBuffer());
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** A grey 8-bit PNG of `data` (width*height bytes, row-major) as a Blob. */
export async function encodeGray8(width, height, data) {
  const raw = new Uint8Array(height * (width + 1)); // filter byte 0 (None) before each row
  for (let y = 0; y < height; y++) raw.set(data.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  const ihdr = new Uint8Array(13);
  const view = new DataView(ihdr.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  ihdr.set([8, 0, 0, 0, 0], 8); // bit depth 8, colour type 0 (grey), deflate, adaptive filters, no interlace
  const idat = await pipe(raw, new CompressionStream("deflate"));
  return new Blob([new Uint8Array(SIGNATURE), chunk("IHDR", ihdr), chunk("IDAT", idat),
                   chunk("IEND", new Uint8Array(0))], { type: "image/png" });
}

function paeth(a, b, c) {
  const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Decode an 8-bit grey or palette PNG to {width, height, data} (palette: the indices themselves). */
export async function decodeGray8(buffer) {
  const png = await decodeGray(buffer);
  if (png.depth !== 8) throw new Error(`unsupported PNG (bit depth ${png.depth})`);
  return png;
}

/** Decode an 8- or 16-bit grey (or 8-bit palette) PNG to {width, height, depth, data}: data is a
 * Uint8Array or, for 16 bits, a Uint16Array of the samples (superpixel ids may need 16 bits). */
export async function decodeGray(buffer) {
  const bytes = new Uint8Array(buffer);
  for (let i = 0; i < 8; i++) if (bytes[i] !== SIGNATURE[i]) throw new Error("not a PNG");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let width = 0, height = 0, depth = 8;
  const parts = [];
  for (let pos = 8; pos + 8 <= bytes.length;) {
    const length = view.getUint32(pos);
    const type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
    const data = bytes.subarray(pos + 8, pos + 8 + length);
    if (type === "IHDR") {
      width = view.getUint32(pos + 8);
      height = view.getUint32(pos + 12);
      const [bits, colour, , , interlace] = data.subarray(8, 13);
      depth = bits;
      const ok = (bits === 8 && (colour === 0 || colour === 3)) || (bits === 16 && colour === 0);
      if (!ok || interlace !== 0) {
        throw new Error(`unsupported PNG (bit depth ${bits}, colour type ${colour}, interlace ${interlace})`);
      }
    } else if (type === "IDAT") parts.push(data);
    else if (type === "IEND") break;
    pos += 12 + length;
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  const joined = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) { joined.set(p, offset); offset += p.length; }
  const raw = await pipe(joined, new DecompressionStream("deflate"));
  const bpp = depth / 8, stride = width * bpp; // filters work on bytes, `bpp` bytes to the left
  const out = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = out.subarray(y * stride, (y + 1) * stride);
    const up = y > 0 ? out.subarray((y - 1) * stride, y * stride) : new Uint8Array(stride);
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? row[x - bpp] : 0, b = up[x], c = x >= bpp ? up[x - bpp] : 0;
      const predictor = filter === 0 ? 0 : filter === 1 ? a : filter === 2 ? b
        : filter === 3 ? (a + b) >> 1 : paeth(a, b, c);
      row[x] = (src[x] + predictor) & 0xff;
    }
  }
  if (depth === 8) return { width, height, depth, data: out };
  const wide = new Uint16Array(width * height); // PNG samples are big-endian
  for (let i = 0; i < wide.length; i++) wide[i] = (out[2 * i] << 8) | out[2 * i + 1];
  return { width, height, depth, data: wide };
}
