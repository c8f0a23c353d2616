// The UniFFI Kotlin binding on the JVM against the `mert` CLI (run by scripts/mobile-test):
//   java -cp test.jar:jna.jar MertTestKt TINY_MODEL_DIR TINY_KIT_FILE TINY_Q8_FILE TAG_MODEL WORKDIR
// WORKDIR as for mobile/tests/c/mert_test.c.

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.abs
import kotlin.system.exitProcess
import uniffi.mert_mobile.Embedding
import uniffi.mert_mobile.MertException
import uniffi.mert_mobile.Model
import uniffi.mert_mobile.Session
import uniffi.mert_mobile.Tag

var failures = 0

fun check(cond: Boolean, msg: () -> String) {
    if (!cond) {
        System.err.println("FAIL: ${msg()}")
        failures++
    }
}

class Pcm(val data: List<Float>, val rate: UInt, val channels: UInt)

/** 16-bit PCM WAV -> interleaved floats (sample / 32768, as the kit's decoder). */
fun readWav(path: String): Pcm {
    val b = ByteBuffer.wrap(File(path).readBytes()).order(ByteOrder.LITTLE_ENDIAN)
    var pos = 12
    var rate = 0
    var channels = 0
    while (pos + 8 <= b.limit()) {
        val id = String(b.array(), pos, 4)
        val size = b.getInt(pos + 4)
        if (id == "fmt ") {
            channels = b.getShort(pos + 10).toInt()
            rate = b.getInt(pos + 12)
        } else if (id == "data") {
            val data = List(size / 2) { i -> b.getShort(pos + 8 + 2 * i) / 32768.0f }
            return Pcm(data, rate.toUInt(), channels.toUInt())
        }
        pos += 8 + size + (size and 1)
    }
    error("$path: no data chunk")
}

fun readNpy(path: String): FloatArray {
    val bytes = File(path).readBytes()
    val b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN)
    val header = 10 + (b.getShort(8).toInt() and 0xffff)
    check(String(bytes, 10, header - 10).contains("'<f4'")) { "$path: expected float32" }
    return FloatArray((bytes.size - header) / 4) { i -> b.getFloat(header + 4 * i) }
}

fun compare(what: String, e: Embedding, refPath: String) {
    val ref = readNpy(refPath)
    check(e.data.size.toULong() == e.frames * e.dim) { "$what: data length" }
    check(e.data.size == ref.size) { "$what: ${e.data.size} values, reference ${ref.size}" }
    if (e.data.size != ref.size) return
    val scale = ref.maxOf { abs(it.toDouble()) }
    val err = e.data.indices.maxOf { i ->
        val d = abs(e.data[i].toDouble() - ref[i].toDouble())
        if (d.isNaN()) Double.POSITIVE_INFINITY else d
    } / scale
    println("%-34s %5d frames x %3d: max rel err %.2e".format(what, e.frames.toLong(), e.dim.toLong(), err))
    check(err <= 1e-5) { "$what: max rel err $err > 1e-5" }
}

fun compareTags(what: String, tags: List<Tag>, refPath: String) {
    val want = File(refPath).readLines().filter { it.isNotBlank() }
    val got = tags.take(want.size).map { it.name }
    println("%-34s %s".format(what, tags.take(want.size).joinToString(" ") { "%s %.3f".format(it.name, it.p) }))
    check(got == want) { "$what: top tags $got, mert tag says $want" }
    check(tags.zipWithNext().all { (a, b) -> a.p >= b.p }) { "$what: sorted" }
}

class Streamed(val embedding: Embedding, val early: Int, val tags: List<Tag>?)

/** Push chunks of odd sizes, collect the chunks, finish. */
fun stream(model: Model, pcm: Pcm): Streamed {
    val data = ArrayList<Float>()
    var frames = 0UL
    var early = 0
    val tagging = model.tagNames().isNotEmpty()
    Session(model, pcm.rate, pcm.channels).use { s ->
        fun take(chunks: List<Embedding>) {
            for (c in chunks) {
                check(c.firstFrame == frames) { "chunk at ${c.firstFrame}, expected $frames" }
                check((c.tags != null) == tagging) { "chunk tags iff tagging" }
                data.addAll(c.data)
                frames += c.frames
            }
        }
        val sizes = listOf(1, 4410, 333, 44100, 7919, 100000)
        val ch = pcm.channels.toInt()
        val nFrames = pcm.data.size / ch
        var at = 0
        var k = 0
        while (at < nFrames) {
            val n = minOf(sizes[k++ % sizes.size], nFrames - at)
            val chunks = s.push(pcm.data.subList(at * ch, (at + n) * ch))
            early += chunks.size
            take(chunks)
            at += n
        }
        take(s.finish())
        check(s.frames() == frames) { "frames() counts what was handed out" }
        val tags = if (tagging) s.tags() else null
        return Streamed(Embedding(0UL, frames, model.dim(), data, null), early, tags)
    }
}

inline fun <reified E : MertException> expect(what: String, f: () -> Unit) {
    try {
        f()
        check(false) { "$what: no error, expected ${E::class.simpleName}" }
    } catch (e: MertException) {
        val msg = e.message ?: ""
        check(e is E) { "$what: raised ${e::class.simpleName} ($msg), expected ${E::class.simpleName}" }
        check(msg.isNotEmpty() && !msg.contains('\n')) { "$what: one-line message, got '$msg'" }
        println("  bad input ok: %-32s -> %s: %s".format(what, e::class.simpleName, msg))
    }
}

fun main(args: Array<String>) {
    if (args.size != 5) {
        System.err.println("usage: MertTestKt TINY_MODEL_DIR TINY_KIT_FILE TINY_Q8_FILE TAG_MODEL WORKDIR")
        exitProcess(2)
    }
    val (tinyDir, kit, q8, taggerPath, work) = args
    val pcm = readWav("$work/phrase.wav")
    val long = readWav("$work/long.wav")

    val tiny = Model.fromPath(tinyDir)
    compare("embed pcm (folder model)", tiny.embed(pcm.data, pcm.rate, pcm.channels), "$work/phrase.npy")
    compare("embed file (folder model)", tiny.embedFile("$work/phrase.wav"), "$work/phrase.npy")
    val kitBytes = File(kit).readBytes()
    Model.fromBytes(kitBytes).use {
        compare("embed pcm (kit bytes)", it.embed(pcm.data, pcm.rate, pcm.channels), "$work/phrase.npy")
    }
    Model.fromPath(q8).use {
        compare("embed pcm (q8 kit file)", it.embed(pcm.data, pcm.rate, pcm.channels), "$work/phrase-q8.npy")
    }
    val streamed = stream(tiny, long)
    compare("stream (24 s, odd chunks)", streamed.embedding, "$work/long.npy")
    check(streamed.early >= 3) { "expected chunks while pushing, got ${streamed.early}" }

    Model.fromPath(taggerPath).use { tagger ->
        compareTags("tag pcm", tagger.tag(pcm.data, pcm.rate, pcm.channels), "$work/phrase.tags")
        compareTags("tag file", tagger.tagFile("$work/phrase.wav"), "$work/phrase.tags")
        compareTags("stream tags (24 s)", stream(tagger, long).tags ?: emptyList(), "$work/long.tags")
    }

    val nanPcm = pcm.data.toMutableList().also { it[1001] = Float.NaN }
    expect<MertException.ModelLoad>("missing model file") { Model.fromPath("/nonexistent/m.safetensors") }
    expect<MertException.ModelLoad>("truncated model bytes") { Model.fromBytes(kitBytes.copyOf(kitBytes.size / 2)) }
    expect<MertException.ModelLoad>("empty model bytes") { Model.fromBytes(ByteArray(0)) }
    expect<MertException.Audio>("NaN pcm") { tiny.embed(nanPcm, pcm.rate, pcm.channels) }
    expect<MertException.InvalidArgument>("zero channels") { tiny.embed(pcm.data, pcm.rate, 0u) }
    expect<MertException.InvalidArgument>("absurd sample rate") { tiny.embed(pcm.data, 4_000_000_000u, pcm.channels) }
    expect<MertException.InvalidArgument>("not whole frames") { tiny.embed(pcm.data.dropLast(1), pcm.rate, 2u) }
    expect<MertException.Audio>("too short") { tiny.embed(pcm.data.take(20), pcm.rate, pcm.channels) }
    expect<MertException.Audio>("missing audio file") { tiny.embedFile("/nonexistent/a.wav") }
    expect<MertException.InvalidArgument>("empty model path") { Model.fromPath("") }
    expect<MertException.InvalidArgument>("empty audio path") { tiny.embedFile("") }
    expect<MertException.State>("tag without a head") { tiny.tag(pcm.data, pcm.rate, pcm.channels) }
    Session(tiny, pcm.rate, pcm.channels).use { s ->
        expect<MertException.Audio>("session push NaN") { s.push(nanPcm) }
        check(s.push(pcm.data).isEmpty()) { "a refused chunk leaves the session usable" }
        expect<MertException.State>("session tags before finish") { s.tags() }
        s.finish()
        expect<MertException.State>("push after finish") { s.push(pcm.data) }
        expect<MertException.State>("finish twice") { s.finish() }
    }
    expect<MertException.InvalidArgument>("session zero channels") { Session(tiny, pcm.rate, 0u) }
    tiny.close()

    if (failures > 0) {
        System.err.println("$failures check(s) failed")
        exitProcess(1)
    }
    println("Kotlin binding: all checks passed")
}
