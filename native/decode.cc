// Batch image decoding for data loading: PNG (libspng) and JPEG (libjpeg-turbo) files or encoded bytes decoded,
// EXIF-oriented, converted to RGB or BT.601 grey and resized (PIL's antialiased bilinear, bit
// for bit) on the environment's pool of decoder threads, many files per call. The result is uint8 CHW pixels per file.
// Anything this path does not decode (other formats, CMYK JPEG, a decode error) is reported per
// file; lib/data/decode.ts decodes it with sharp (which also words the error for corrupt files)
// and sends the pixels back here for the same grey conversion and resizing.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "workers.h"

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#ifdef KILN_HAVE_SPNG
#include <spng.h>
#endif
#ifdef KILN_HAVE_TURBOJPEG
#include <turbojpeg.h>
#endif

namespace kiln {

namespace {

constexpr uint64_t kMaxPixels = 1ull << 28;  // as sharp's limitInputPixels in decode.ts

enum Fit { kCover = 0, kContain = 1, kFill = 2 };

struct DecodeSpec {
  int height = 0, width = 0;  // 0: keep the image's size
  int fit = kCover;
  int channels = 3;
  bool autoOrient = true;
  bool shrinkOnLoad = false;  // JPEG: decode at 1/2, 1/4 or 1/8 scale when the output is much smaller
};

/** Interleaved 8-bit pixels. */
struct Image {
  int h = 0, w = 0, c = 0;
  std::vector<uint8_t> px;
};

/** One file's outcome: CHW pixels, or why this path could not decode it. */
struct Item {
  std::string path;               // a file to decode, or empty
  std::vector<uint8_t> encoded;   // encoded PNG/JPEG bytes to decode when there is no path (hasEncoded)
  bool hasEncoded = false;
  Image raw;                      // else: interleaved pixels from sharp, to convert and resize here
  std::vector<uint8_t> chw;
  int h = 0, w = 0;
  std::string reason;  // empty: decoded
};

bool readFile(const std::string& path, std::vector<uint8_t>& out, std::string& reason) {
  // opened without blocking and checked to be a regular file: fopen on a FIFO waits for a writer, forever
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    reason = "cannot open file";
    return false;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    reason = "not a regular file";
    return false;
  }
  FILE* f = ::fdopen(fd, "rb");
  if (!f) {
    ::close(fd);
    reason = "cannot open file";
    return false;
  }
  std::fseek(f, 0, SEEK_END);
  long n = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  if (n <= 0 || n > (1l << 30)) {  // empty, unseekable (a folder) or over 1 GiB: left to sharp's checks
    std::fclose(f);
    reason = n <= 0 ? "empty or unreadable file" : "file over 1 GiB";
    return false;
  }
  out.resize(static_cast<size_t>(n));
  size_t got = std::fread(out.data(), 1, out.size(), f);
  std::fclose(f);
  if (got != out.size()) {
    reason = "short read";
    return false;
  }
  return true;
}

// ---- EXIF orientation ------------------------------------------------------------------

/** The Orientation tag (1..8) of a TIFF-structured EXIF block; 1 when absent or malformed. */
int exifOrientation(const uint8_t* p, size_t n) {
  if (n < 8) return 1;
  bool le = p[0] == 'I' && p[1] == 'I';
  if (!le && !(p[0] == 'M' && p[1] == 'M')) return 1;
  auto u16 = [&](size_t o) -> uint32_t { return le ? p[o] | (p[o + 1] << 8) : (p[o] << 8) | p[o + 1]; };
  auto u32 = [&](size_t o) -> uint32_t {
    return le ? p[o] | (p[o + 1] << 8) | (p[o + 2] << 16) | (uint32_t(p[o + 3]) << 24)
              : (uint32_t(p[o]) << 24) | (p[o + 1] << 16) | (p[o + 2] << 8) | p[o + 3];
  };
  if (u16(2) != 42) return 1;
  size_t ifd = u32(4);
  if (ifd + 2 > n) return 1;
  uint32_t count = u16(ifd);
  for (uint32_t i = 0; i < count; i++) {
    size_t e = ifd + 2 + 12 * size_t(i);
    if (e + 12 > n) return 1;
    if (u16(e) == 0x0112) {
      uint32_t v = u16(e + 8);
      return v >= 1 && v <= 8 ? static_cast<int>(v) : 1;
    }
  }
  return 1;
}

/** The orientation of a JPEG from its APP1 Exif segment (markers before the first scan). */
int jpegOrientation(const std::vector<uint8_t>& b) {
  size_t o = 2;
  while (o + 4 <= b.size()) {
    if (b[o] != 0xFF) return 1;
    uint8_t m = b[o + 1];
    if (m == 0xFF) {  // fill byte
      o++;
      continue;
    }
    if (m == 0xDA || m == 0xD9) return 1;  // start of scan / end of image
    size_t len = (b[o + 2] << 8) | b[o + 3];
    if (len < 2 || o + 2 + len > b.size()) return 1;
    if (m == 0xE1 && len >= 8 && std::memcmp(&b[o + 4], "Exif\0\0", 6) == 0) return exifOrientation(&b[o + 10], len - 8);
    o += 2 + len;
  }
  return 1;
}

/** Applies EXIF orientation 2..8 (mirror / rotate) so the image is upright. */
void orient(Image& im, int o) {
  if (o <= 1 || o > 8) return;
  const int H = im.h, W = im.w, C = im.c;
  const bool swap = o >= 5;
  const int oh = swap ? W : H, ow = swap ? H : W;
  std::vector<uint8_t> out(im.px.size());
  for (int y = 0; y < oh; y++) {
    for (int x = 0; x < ow; x++) {
      int sy, sx;
      switch (o) {
        case 2: sy = y, sx = W - 1 - x; break;
        case 3: sy = H - 1 - y, sx = W - 1 - x; break;
        case 4: sy = H - 1 - y, sx = x; break;
        case 5: sy = x, sx = y; break;
        case 6: sy = H - 1 - x, sx = y; break;
        case 7: sy = H - 1 - x, sx = W - 1 - y; break;
        default: sy = x, sx = W - 1 - y; break;  // 8
      }
      std::memcpy(&out[(size_t(y) * ow + x) * C], &im.px[(size_t(sy) * W + sx) * C], C);
    }
  }
  im.px.swap(out);
  im.h = oh;
  im.w = ow;
}

// ---- decoders ------------------------------------------------------------------------

#ifdef KILN_HAVE_SPNG
/** PNG to 8-bit RGB (alpha dropped, palette expanded, 16-bit scaled) or grey for grey PNGs. */
bool decodePng(const std::vector<uint8_t>& b, bool autoOrient, Image& im, std::string& reason) {
  std::unique_ptr<spng_ctx, void (*)(spng_ctx*)> ctx(spng_ctx_new(0), spng_ctx_free);
  if (!ctx) {
    reason = "out of memory";
    return false;
  }
  spng_set_image_limits(ctx.get(), 1u << 24, 1u << 24);
  spng_set_chunk_limits(ctx.get(), 64u << 20, 64u << 20);
  spng_set_png_buffer(ctx.get(), b.data(), b.size());
  spng_ihdr ihdr;
  int r = spng_get_ihdr(ctx.get(), &ihdr);
  if (r) {
    reason = spng_strerror(r);
    return false;
  }
  if (uint64_t(ihdr.width) * ihdr.height > kMaxPixels) {
    reason = "image too large";
    return false;
  }
  bool grey = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE && ihdr.bit_depth <= 8;
  int fmt = grey ? SPNG_FMT_G8 : SPNG_FMT_RGB8;
  size_t len;
  r = spng_decoded_image_size(ctx.get(), fmt, &len);
  if (!r) {
    im.px.resize(len);
    r = spng_decode_image(ctx.get(), im.px.data(), len, fmt, 0);
  }
  if (r) {
    reason = spng_strerror(r);
    return false;
  }
  im.h = static_cast<int>(ihdr.height);
  im.w = static_cast<int>(ihdr.width);
  im.c = grey ? 1 : 3;
  if (autoOrient) {
    spng_exif exif;
    if (spng_get_exif(ctx.get(), &exif) == 0) orient(im, exifOrientation(reinterpret_cast<const uint8_t*>(exif.data), exif.length));
  }
  return true;
}
#endif

#ifdef KILN_HAVE_TURBOJPEG
/**
 * With shrinkOnLoad, the coarsest DCT scale (1/2, 1/4, 1/8) that still leaves at least twice the
 * resolution the fit needs, so the antialiased resize that follows has enough to average; else 1.
 */
double jpegScale(int w, int h, int orientation, const DecodeSpec& s) {
  if (!s.shrinkOnLoad || s.height == 0) return 1.0;
  const double ow = orientation >= 5 ? h : w, oh = orientation >= 5 ? w : h;
  const double sx = s.width / ow, sy = s.height / oh;
  const double need = s.fit == kContain ? std::min(sx, sy) : std::max(sx, sy);
  for (double f : {0.125, 0.25, 0.5})
    if (f >= 2 * need) return f;
  return 1.0;
}

/**
 * JPEG to RGB (grey JPEGs to grey). Colour JPEGs go through RGB even when grey is asked, so the
 * grey is PIL's convert('L') of the decoded RGB, not the stored luma (which can differ by 1).
 */
bool decodeJpeg(tjhandle tj, const std::vector<uint8_t>& b, const DecodeSpec& spec, Image& im, std::string& reason) {
  int w, h, subsamp, colorspace;
  if (tjDecompressHeader3(tj, b.data(), b.size(), &w, &h, &subsamp, &colorspace) != 0) {
    reason = tjGetErrorStr2(tj);
    return false;
  }
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    reason = "CMYK JPEG";
    return false;
  }
  if (w <= 0 || h <= 0 || uint64_t(w) * h > kMaxPixels) {
    reason = "image too large";
    return false;
  }
  const int orientation = spec.autoOrient ? jpegOrientation(b) : 1;
  const double f = jpegScale(w, h, orientation, spec);
  const tjscalingfactor sf{1, f == 1.0 ? 1 : static_cast<int>(1 / f)};
  im.c = colorspace == TJCS_GRAY ? 1 : 3;
  im.w = TJSCALED(w, sf);
  im.h = TJSCALED(h, sf);
  im.px.resize(size_t(im.w) * im.h * im.c);
  // STOPONWARNING: a truncated file fails here (and in sharp, with failOn 'truncated').
  if (tjDecompress2(tj, b.data(), b.size(), im.px.data(), im.w, 0, im.h, im.c == 1 ? TJPF_GRAY : TJPF_RGB, TJFLAG_STOPONWARNING) != 0) {
    reason = tjGetErrorStr2(tj);
    return false;
  }
  orient(im, orientation);
  return true;
}
#endif

// ---- colour and resizing -------------------------------------------------------------

/** RGB → grey with ITU-R 601-2 luma, PIL's convert('L') integer formula. */
void toGrey(Image& im) {
  if (im.c == 1) return;
  size_t n = size_t(im.h) * im.w;
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; i++) {
    const uint8_t* p = &im.px[i * 3];
    out[i] = static_cast<uint8_t>((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
  }
  im.px.swap(out);
  im.c = 1;
}

void toRgb(Image& im) {
  if (im.c == 3) return;
  size_t n = size_t(im.h) * im.w;
  std::vector<uint8_t> out(n * 3);
  for (size_t i = 0; i < n; i++) out[i * 3] = out[i * 3 + 1] = out[i * 3 + 2] = im.px[i];
  im.px.swap(out);
  im.c = 3;
}

constexpr int kPrecisionBits = 32 - 8 - 2;  // PIL's fixed-point precision for 8-bit images

/** PIL's precompute_coeffs for the bilinear (triangle) filter over the source box [in0, in1). */
struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // per output: first source index, count
  std::vector<int32_t> k;   // fixed point, ksize per output
};

Coeffs coeffs(int inSize, double in0, double in1, int outSize) {
  Coeffs c;
  double scale = (in1 - in0) / outSize;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = 1.0 * filterscale;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(size_t(outSize) * 2);
  c.k.assign(size_t(outSize) * c.ksize, 0);
  std::vector<double> kk(c.ksize);
  for (int xx = 0; xx < outSize; xx++) {
    double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0, ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    for (int x = 0; x < xmax; x++) {
      double t = std::fabs((x + xmin - center + 0.5) * ss);
      double w = t < 1.0 ? 1.0 - t : 0.0;
      kk[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; x++) {
      double v = ww != 0.0 ? kk[x] / ww : kk[x];
      c.k[size_t(xx) * c.ksize + x] = v < 0 ? int32_t(-0.5 + v * (1 << kPrecisionBits)) : int32_t(0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[xx * 2] = xmin;
    c.bounds[xx * 2 + 1] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t v) {
  v >>= kPrecisionBits;
  return v < 0 ? 0 : v > 255 ? 255 : static_cast<uint8_t>(v);
}

/** Horizontal pass over `rows` rows of C-channel pixels. */
template <int C>
void horizontalPass(const uint8_t* in, int inW, int rows, uint8_t* out, int outW, const Coeffs& ch) {
  for (int y = 0; y < rows; y++) {
    const uint8_t* row = in + size_t(y) * inW * C;
    uint8_t* o = out + size_t(y) * outW * C;
    for (int xx = 0; xx < outW; xx++) {
      const int xmin = ch.bounds[xx * 2], xmax = ch.bounds[xx * 2 + 1];
      const int32_t* k = &ch.k[size_t(xx) * ch.ksize];
      const uint8_t* p = row + size_t(xmin) * C;
      int32_t ss[C];
      for (int c = 0; c < C; c++) ss[c] = 1 << (kPrecisionBits - 1);
      for (int x = 0; x < xmax; x++)
        for (int c = 0; c < C; c++) ss[c] += p[x * C + c] * k[x];
      for (int c = 0; c < C; c++) o[xx * C + c] = clip8(ss[c]);
    }
  }
}

/**
 * PIL's Image.resize(size, BILINEAR, box): antialiased separable resampling of the source box
 * (x0, y0, x1, y1) to outW × outH, horizontal pass first, 8-bit between passes, the same
 * fixed-point arithmetic — so the pixels equal PIL's.
 */
Image resample(const Image& in, double x0, double y0, double x1, double y1, int outW, int outH) {
  const int C = in.c;
  bool needH = outW != in.w || x0 != 0 || x1 != in.w;
  bool needV = outH != in.h || y0 != 0 || y1 != in.h;
  Coeffs cv = coeffs(in.h, y0, y1, outH);
  Image tmp;
  const Image* cur = &in;
  if (needH) {
    Coeffs ch = coeffs(in.w, x0, x1, outW);
    // only the source rows the vertical pass reads
    int first = needV ? cv.bounds[0] : 0;
    int last = needV ? cv.bounds[(outH - 1) * 2] + cv.bounds[(outH - 1) * 2 + 1] : in.h;
    tmp.h = last - first, tmp.w = outW, tmp.c = C;
    tmp.px.resize(size_t(tmp.h) * outW * C);
    const uint8_t* src = in.px.data() + size_t(first) * in.w * C;
    if (C == 1) horizontalPass<1>(src, in.w, tmp.h, tmp.px.data(), outW, ch);
    else horizontalPass<3>(src, in.w, tmp.h, tmp.px.data(), outW, ch);
    if (!needV) return tmp;
    for (int i = 0; i < outH; i++) cv.bounds[i * 2] -= first;
    cur = &tmp;
  } else if (!needV) {
    return in;  // a box equal to the whole image: nothing to resample
  }
  Image out;
  out.h = outH, out.w = cur->w, out.c = C;
  const size_t stride = size_t(cur->w) * C;
  out.px.resize(size_t(outH) * stride);
  std::vector<int32_t> acc(stride);
  for (int yy = 0; yy < outH; yy++) {
    const int ymin = cv.bounds[yy * 2], ymax = cv.bounds[yy * 2 + 1];
    const int32_t* k = &cv.k[size_t(yy) * cv.ksize];
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    for (int y = 0; y < ymax; y++) {
      const uint8_t* r = cur->px.data() + size_t(y + ymin) * stride;
      const int32_t ky = k[y];
      for (size_t i = 0; i < stride; i++) acc[i] += r[i] * ky;
    }
    uint8_t* dst = &out.px[yy * stride];
    for (size_t i = 0; i < stride; i++) dst[i] = clip8(acc[i]);
  }
  return out;
}

/** Fits the image into spec's size: cover (scale, centre-crop), contain (letterbox in black), fill. */
Image fitTo(Image im, const DecodeSpec& s) {
  if (s.height == 0 || (im.h == s.height && im.w == s.width)) return im;  // moved, not copied
  const int H = s.height, W = s.width;
  if (s.fit == kFill) return resample(im, 0, 0, im.w, im.h, W, H);
  if (s.fit == kCover) {
    // the centred source box with the output's aspect ratio
    double bw = im.w, bh = im.h;
    if (double(im.w) * H > double(W) * im.h) bw = double(im.h) * W / H;
    else bh = double(im.w) * H / W;
    double x0 = (im.w - bw) / 2, y0 = (im.h - bh) / 2;
    return resample(im, x0, y0, x0 + bw, y0 + bh, W, H);
  }
  double scale = std::min(double(W) / im.w, double(H) / im.h);
  int rw = std::max(1, std::min(W, static_cast<int>(std::lround(im.w * scale))));
  int rh = std::max(1, std::min(H, static_cast<int>(std::lround(im.h * scale))));
  Image inner = resample(im, 0, 0, im.w, im.h, rw, rh);
  Image out;
  out.h = H, out.w = W, out.c = im.c;
  out.px.assign(size_t(H) * W * im.c, 0);
  int top = (H - rh) / 2, left = (W - rw) / 2;
  for (int y = 0; y < rh; y++)
    std::memcpy(&out.px[(size_t(y + top) * W + left) * im.c], &inner.px[size_t(y) * rw * im.c], size_t(rw) * im.c);
  return out;
}

// ---- the batch job -------------------------------------------------------------------

/** One thread's TurboJPEG decompressor (null without libturbojpeg), destroyed with it. */
struct JpegDecoder {
  void* handle = nullptr;
#ifdef KILN_HAVE_TURBOJPEG
  JpegDecoder() : handle(tjInitDecompress()) {}
  ~JpegDecoder() {
    if (handle) tjDestroy(static_cast<tjhandle>(handle));
  }
#else
  JpegDecoder() = default;
#endif
  JpegDecoder(const JpegDecoder&) = delete;
  JpegDecoder& operator=(const JpegDecoder&) = delete;
};

/**
 * The environment's decoder threads, shared by every decode call: however many batches are in
 * flight (a prefetching DataLoader has several), at most `size` threads decode, so they do not
 * crowd out the main thread and libtorch's own threads. Tasks run in submission order, so the
 * oldest batch finishes first. Each thread keeps one TurboJPEG handle.
 */
class DecodePool {
 public:
  ~DecodePool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  /** Grows the pool to n threads (it never shrinks); returns how many it has. */
  size_t ensure(size_t n) {
    std::lock_guard<std::mutex> lk(m_);
    try {
      while (threads_.size() < n) threads_.emplace_back([this] { loop(); });
    } catch (...) {  // could not start more threads: work with the ones there are
    }
    return threads_.size();
  }
  void submit(std::function<void(void*)> task) {
    {
      std::lock_guard<std::mutex> lk(m_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }

 private:
  void loop() {
    JpegDecoder tj;
    for (;;) {
      std::function<void(void*)> task;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [this] { return stop_ || !tasks_.empty(); });
        if (tasks_.empty()) break;  // stopping and drained
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task(tj.handle);
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void(void*)>> tasks_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
};

DecodePool& poolOf(KilnEnv* k) {
  if (!k->decodePool) k->decodePool = std::shared_ptr<void>(new DecodePool(), [](void* p) { delete static_cast<DecodePool*>(p); });
  return *static_cast<DecodePool*>(k->decodePool.get());
}

struct DecodeJob {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  DecodeSpec spec;
  std::shared_ptr<void> pool;  // keeps the environment's pool alive while the job runs
  size_t poolThreads = 0;
  std::vector<Item> items;
};

/** Decodes PNG or JPEG bytes (told apart by their signature). */
bool decodeBytes(const std::vector<uint8_t>& bytes, Item& it, const DecodeSpec& s, void* tj, Image& im) {
  bool ok = false;
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), "\x89PNG\r\n\x1a\n", 8) == 0) {
#ifdef KILN_HAVE_SPNG
    ok = decodePng(bytes, s.autoOrient, im, it.reason);
#else
    it.reason = "built without libspng";
#endif
  } else if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) {
#ifdef KILN_HAVE_TURBOJPEG
    ok = decodeJpeg(static_cast<tjhandle>(tj), bytes, s, im, it.reason);
#else
    it.reason = "built without libturbojpeg";
#endif
  } else {
    it.reason = "not PNG or JPEG";
  }
  return ok;
}

/** Decodes (or takes the given pixels), converts the channels, fits the size, writes CHW. */
void decodeOne(Item& it, const DecodeSpec& s, void* tj) {
  Image im;
  if (!it.path.empty()) {
    std::vector<uint8_t> bytes;
    if (!readFile(it.path, bytes, it.reason) || !decodeBytes(bytes, it, s, tj, im)) return;
  } else if (it.hasEncoded) {
    if (!decodeBytes(it.encoded, it, s, tj, im)) return;
    std::vector<uint8_t>().swap(it.encoded);
  } else {
    im = std::move(it.raw);
  }
  if (s.channels == 1) toGrey(im);
  else toRgb(im);
  Image out = fitTo(std::move(im), s);
  // interleaved HWC → planar CHW
  const size_t plane = size_t(out.h) * out.w;
  if (out.c == 1) {
    it.chw = std::move(out.px);
  } else {
    it.chw.resize(plane * out.c);
    for (size_t i = 0; i < plane; i++)
      for (int c = 0; c < out.c; c++) it.chw[c * plane + i] = out.px[i * out.c + c];
  }
  it.h = out.h;
  it.w = out.w;
}

/** Decodes one item; any failure becomes the item's reason (the native path then declines it). */
void decodeSafely(Item& it, const DecodeSpec& spec, void* tj) {
  try {
    decodeOne(it, spec, tj);
  } catch (const std::bad_alloc&) {
    it.reason = "out of memory";
  } catch (const std::exception& e) {
    it.reason = e.what();
  }
  if (!it.reason.empty()) it.chw.clear();
}

/** On a libuv thread: hands the items to the pool and waits (without spinning) until all are done. */
void decodeExecute(napi_env, void* data) {
  auto* job = static_cast<DecodeJob*>(data);
  // no decoder thread could start, or one item (a served request): decode here, without a hand-off
  if (job->poolThreads == 0 || job->items.size() == 1) {
    JpegDecoder tj;
    for (auto& it : job->items) decodeSafely(it, job->spec, tj.handle);
    return;
  }
  auto& pool = *static_cast<DecodePool*>(job->pool.get());
  std::mutex m;
  std::condition_variable done;
  size_t remaining = job->items.size();
  for (auto& it : job->items) {
    pool.submit([&, item = &it](void* tj) {
      decodeSafely(*item, job->spec, tj);
      std::lock_guard<std::mutex> lk(m);
      if (--remaining == 0) done.notify_one();
    });
  }
  std::unique_lock<std::mutex> lk(m);
  done.wait(lk, [&] { return remaining == 0; });
}

napi_value newInt(napi_env env, int v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

void decodeComplete(napi_env env, napi_status status, void* data) {
  std::unique_ptr<DecodeJob> job(static_cast<DecodeJob*>(data));
  napi_delete_async_work(env, job->work);
  if (status != napi_ok) {
    rejectJs(env, job->deferred, "NATIVE", "image decoding cancelled");
    return;
  }
  // [{data: ArrayBuffer, height, width} | reason string] per file; pixels handed over without a copy
  napi_value arr;
  napi_create_array_with_length(env, job->items.size(), &arr);
  for (size_t i = 0; i < job->items.size(); i++) {
    Item& it = job->items[i];
    napi_value v;
    if (!it.reason.empty()) {
      napi_create_string_utf8(env, it.reason.c_str(), it.reason.size(), &v);
    } else {
      auto* holder = new std::vector<uint8_t>(std::move(it.chw));
      napi_value ab;
      napi_status st = napi_create_external_arraybuffer(
          env, holder->data(), holder->size(), [](napi_env, void*, void* hint) { delete static_cast<std::vector<uint8_t>*>(hint); },
          holder, &ab);
      if (st != napi_ok) {
        void* dst;
        napi_create_arraybuffer(env, holder->size(), &dst, &ab);
        std::memcpy(dst, holder->data(), holder->size());
        delete holder;
      }
      napi_create_object(env, &v);
      napi_set_named_property(env, v, "data", ab);
      napi_set_named_property(env, v, "height", newInt(env, it.h));
      napi_set_named_property(env, v, "width", newInt(env, it.w));
    }
    napi_set_element(env, arr, static_cast<uint32_t>(i), v);
  }
  napi_resolve_deferred(env, job->deferred, arr);
}

int32_t intProp(napi_env env, napi_value o, const char* name) {
  napi_value v;
  int32_t r = 0;
  if (napi_get_named_property(env, o, name, &v) != napi_ok || napi_get_value_int32(env, v, &r) != napi_ok)
    fail("INVALID_ARGUMENT", std::string("decodeImages: pixels need an integer ") + name);
  return r;
}

/** Reads one input: a path, {encoded: Uint8Array} (PNG/JPEG bytes), or {data: Uint8Array (HWC), height, width, channels}; bytes are copied. */
void readInput(napi_env env, napi_value v, Item& it) {
  napi_valuetype type;
  napi_typeof(env, v, &type);
  if (type == napi_string) {
    size_t len;
    napi_get_value_string_utf8(env, v, nullptr, 0, &len);
    it.path.resize(len);
    napi_get_value_string_utf8(env, v, it.path.data(), len + 1, &len);
    if (it.path.empty()) fail("INVALID_ARGUMENT", "decodeImages: empty path");
    return;
  }
  if (type != napi_object) fail("INVALID_ARGUMENT", "decodeImages: inputs must be paths or pixel objects");
  bool hasEncoded = false;
  napi_has_named_property(env, v, "encoded", &hasEncoded);
  if (hasEncoded) {
    napi_value e;
    napi_get_named_property(env, v, "encoded", &e);
    bool isTyped = false;
    napi_is_typedarray(env, e, &isTyped);
    napi_typedarray_type tt = napi_int8_array;
    size_t len = 0;
    void* ptr = nullptr;
    if (isTyped) napi_get_typedarray_info(env, e, &tt, &len, &ptr, nullptr, nullptr);
    if (!isTyped || tt != napi_uint8_array) fail("INVALID_ARGUMENT", "decodeImages: encoded must be a Uint8Array");
    if (len == 0) fail("INVALID_ARGUMENT", "decodeImages: encoded is empty");
    const auto* p = static_cast<const uint8_t*>(ptr);
    it.encoded.assign(p, p + len);
    it.hasEncoded = true;
    return;
  }
  napi_value d;
  napi_get_named_property(env, v, "data", &d);
  bool isTyped = false;
  napi_is_typedarray(env, d, &isTyped);
  if (!isTyped) fail("INVALID_ARGUMENT", "decodeImages: pixels.data must be a Uint8Array");
  napi_typedarray_type tt;
  size_t len;
  void* ptr;
  napi_get_typedarray_info(env, d, &tt, &len, &ptr, nullptr, nullptr);
  Image& im = it.raw;
  im.h = intProp(env, v, "height"), im.w = intProp(env, v, "width"), im.c = intProp(env, v, "channels");
  if (tt != napi_uint8_array || im.h <= 0 || im.w <= 0 || (im.c != 1 && im.c != 3) || size_t(im.h) * im.w * im.c != len)
    fail("INVALID_ARGUMENT", "decodeImages: pixels must be uint8 height × width × channels (1 or 3)");
  const auto* p = static_cast<const uint8_t*>(ptr);
  im.px.assign(p, p + len);
}

/** decodeImagesAsync(inputs, height, width, fit, channels, autoOrient, threads, shrinkOnLoad) → Promise. */
napi_value decodeImagesAsync(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  auto job = std::make_unique<DecodeJob>();
  uint32_t n = 0;
  bool isArray = false;
  napi_is_array(env, a.argv[0], &isArray);
  if (!isArray) fail("INVALID_ARGUMENT", "decodeImages: inputs must be an array");
  napi_get_array_length(env, a.argv[0], &n);
  job->items.resize(n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    napi_get_element(env, a.argv[0], i, &v);
    readInput(env, v, job->items[i]);
  }
  job->spec.height = a.i32(1);
  job->spec.width = a.i32(2);
  job->spec.fit = a.i32(3);
  job->spec.channels = a.i32(4);
  job->spec.autoOrient = a.flag(5);
  const int threads = a.i32(6);
  job->spec.shrinkOnLoad = a.flag(7);
  if (threads < 1) fail("INVALID_ARGUMENT", "decodeImages: threads must be positive");
  job->poolThreads = job->items.empty() ? 0 : poolOf(a.k).ensure(static_cast<size_t>(threads));
  job->pool = a.k->decodePool;
  if (job->spec.height < 0 || job->spec.width < 0 || (job->spec.height == 0) != (job->spec.width == 0))
    fail("INVALID_ARGUMENT", "decodeImages: bad size");
  if (job->spec.channels != 1 && job->spec.channels != 3) fail("INVALID_ARGUMENT", "decodeImages: channels must be 1 or 3");
  if (job->spec.fit < kCover || job->spec.fit > kFill) fail("INVALID_ARGUMENT", "decodeImages: bad fit");
  return queueJob(env, std::move(job), "kiln.decodeImages", decodeExecute, decodeComplete);
  KILN_CATCH(env)
}

/** decodeFormats() → {png, jpeg}: which formats the native path decodes in this build. */
napi_value decodeFormats(napi_env env, napi_callback_info info) {
  napi_value o, t, f;
  napi_create_object(env, &o);
  napi_get_boolean(env, true, &t);
  napi_get_boolean(env, false, &f);
#ifdef KILN_HAVE_SPNG
  napi_set_named_property(env, o, "png", t);
#else
  napi_set_named_property(env, o, "png", f);
#endif
#ifdef KILN_HAVE_TURBOJPEG
  napi_set_named_property(env, o, "jpeg", t);
#else
  napi_set_named_property(env, o, "jpeg", f);
#endif
  return o;
}

}  // namespace

void registerDecode(napi_env env, napi_value exports, KilnEnv* k) {
  defineFn(env, exports, k, "decodeImagesAsync", decodeImagesAsync);
  defineFn(env, exports, k, "decodeFormats", decodeFormats);
}

}  // namespace kiln
