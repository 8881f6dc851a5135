"""A stand-in for DaVinci Resolve's scripting API (the documented objects and
methods the Resolve integration calls), recording calls and behaving as the
API reference describes:

* ``Timeline.GetMarkInOut()`` gives In/Out as offsets from the timeline's
  start; render settings ``MarkIn``/``MarkOut`` and ``AppendToTimeline``'s
  ``recordFrame`` are absolute record frames (``GetStartFrame()`` based), and
  settings outside the timeline are refused;
* ``SetRenderSettings`` accepts the documented keys only; format/codec must be
  among ``GetRenderFormats``/``GetRenderCodecs``;
* ``StartRendering`` writes a real single-clip QuickTime of the marked range
  whose timecode is the record timecode of the In point (what Resolve does);
  ``IsRenderingInProgress`` stays True for a few polls;
* ``ImportMedia`` probes the file (frames, Start TC); ``AppendToTimeline``
  refuses tracks that do not exist and occupied ranges; TimelineItem
  ``GetEnd`` is exclusive.
"""

from __future__ import annotations

import os
from fractions import Fraction

RENDER_KEYS = {"SelectAllFrames", "MarkIn", "MarkOut", "TargetDir", "CustomName", "UniqueFilenameStyle",
               "ExportVideo", "ExportAudio", "FormatWidth", "FormatHeight", "FrameRate", "PixelAspectRatio",
               "VideoQuality", "AudioCodec", "AudioBitDepth", "AudioSampleRate", "ColorSpaceTag", "GammaTag",
               "ExportAlpha", "EncodingProfile", "MultiPassEncode", "AlphaMode", "NetworkOptimization"}
CLIP_INFO_KEYS = {"mediaPoolItem", "startFrame", "endFrame", "mediaType", "trackIndex", "recordFrame"}


class Recorder:
    def __init__(self):
        self.calls: list[tuple] = []

    def log(self, *call):
        self.calls.append(call)

    def names(self):
        return [c[0] for c in self.calls]


def _tc(frame: int, fps: int) -> str:
    s, f = divmod(frame, fps)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{f:02d}"


class MediaPoolItem:
    def __init__(self, path, props):
        self.path, self.props = path, props

    def GetClipProperty(self, name=None):
        return dict(self.props) if name is None else self.props.get(name, "")

    def GetName(self):
        return os.path.basename(self.path)


class TimelineItem:
    def __init__(self, name, start, end, media_pool_item=None, left_offset=0):
        self.name, self.start, self.end, self.mpi = name, start, end, media_pool_item
        self.left_offset = left_offset  # media frames trimmed off the clip's head

    def GetStart(self):
        return self.start

    def GetEnd(self):
        return self.end  # exclusive: start + duration

    def GetName(self):
        return self.name

    def GetMediaPoolItem(self):
        return self.mpi


class Folder:
    def __init__(self, name):
        self.name, self.subfolders, self.clips = name, [], []

    def GetName(self):
        return self.name

    def GetSubFolderList(self):
        return list(self.subfolders)

    def GetClipList(self):
        return list(self.clips)


class Timeline:
    def __init__(self, rec, name="Reel 1", fps=24, start_tc_frames=86400, duration=48, marks=(10, 21)):
        self.rec, self.name, self.fps = rec, name, fps
        self.start, self.duration = start_tc_frames, duration
        self.marks = marks
        self.tracks: list[list[TimelineItem]] = [[TimelineItem("plate", start_tc_frames, start_tc_frames + duration)]]

    def GetName(self):
        return self.name

    def GetStartFrame(self):
        return self.start

    def GetEndFrame(self):
        return self.start + self.duration

    def GetStartTimecode(self):
        return _tc(self.start, self.fps)

    def GetSetting(self, name=None):
        return {"timelineFrameRate": str(self.fps)}.get(name, "")

    def GetMarkInOut(self):
        self.rec.log("GetMarkInOut")
        if self.marks is None:
            return {}
        a, b = self.marks
        return {"video": {"in": a, "out": b}, "audio": {"in": a, "out": b}}

    def GetTrackCount(self, kind):
        return len(self.tracks) if kind == "video" else 1

    def GetItemListInTrack(self, kind, index):
        assert kind == "video" and 1 <= index <= len(self.tracks), (kind, index)
        return list(self.tracks[index - 1])

    def AddTrack(self, kind, sub=None):
        self.rec.log("AddTrack", kind)
        self.tracks.append([])
        return True

    def Export(self, path, kind, subtype=None):
        """``resolve.EXPORT_OTIO``: the video tracks as OpenTimelineIO, each item
        a clip of its media pool item's file from the media's own timecode, as
        Resolve writes them (items without media are skipped)."""
        import opentimelineio as otio

        self.rec.log("Export", path, kind)
        if kind != Resolve.EXPORT_OTIO:
            return False
        tl = otio.schema.Timeline(self.name, global_start_time=otio.opentime.RationalTime(self.start, self.fps))
        for items in self.tracks:
            track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
            at = self.start
            for item in sorted(items, key=lambda i: i.GetStart()):
                mpi = item.GetMediaPoolItem()
                if mpi is None:
                    continue
                if item.GetStart() > at:
                    track.append(otio.schema.Gap(source_range=otio.opentime.TimeRange(
                        duration=otio.opentime.RationalTime(item.GetStart() - at, self.fps))))
                props = mpi.GetClipProperty()
                media_start = otio.opentime.from_timecode(props["Start TC"], self.fps)
                frames = int(props["Frames"])
                ref = otio.schema.ExternalReference(target_url=mpi.path, available_range=otio.opentime.TimeRange(
                    media_start, otio.opentime.RationalTime(frames, self.fps)))
                src = otio.opentime.TimeRange(media_start + otio.opentime.RationalTime(item.left_offset, self.fps),
                                              otio.opentime.RationalTime(item.GetEnd() - item.GetStart(), self.fps))
                track.append(otio.schema.Clip(item.GetName(), media_reference=ref, source_range=src))
                at = item.GetEnd()
            tl.tracks.append(track)
        otio.adapters.write_to_file(tl, path)
        return True


class MediaPool:
    def __init__(self, rec, project):
        self.rec, self.project = rec, project
        self.root = Folder("Master")
        self.current = self.root

    def GetRootFolder(self):
        return self.root

    def AddSubFolder(self, folder, name):
        self.rec.log("AddSubFolder", folder.GetName(), name)
        sub = Folder(name)
        folder.subfolders.append(sub)
        return sub

    def GetCurrentFolder(self):
        return self.current

    def SetCurrentFolder(self, folder):
        self.rec.log("SetCurrentFolder", folder.GetName())
        self.current = folder
        return True

    def ImportMedia(self, items):
        import av

        self.rec.log("ImportMedia", items, self.current.GetName())
        out = []
        for path in items:
            assert isinstance(path, str), "this integration imports movies by path"
            if not os.path.isfile(path):
                continue
            with av.open(path) as c:
                v = c.streams.video[0]
                frames = sum(1 for p in c.demux(v) if p.size)
                tc = v.metadata.get("timecode") or c.metadata.get("timecode") or "00:00:00:00"
                rate = Fraction(v.average_rate)
            item = MediaPoolItem(path, {"Frames": str(frames), "Start TC": tc, "FPS": f"{float(rate):g}",
                                        "File Path": path, "Resolution": f"{v.width}x{v.height}"})
            self.current.clips.append(item)
            out.append(item)
        return out

    def ImportTimelineFromFile(self, path, options=None):
        """A timeline from an exported file (OTIO here), named ``timelineName``."""
        import opentimelineio as otio

        self.rec.log("ImportTimelineFromFile", path, dict(options or {}))
        if not os.path.isfile(path):
            return None
        src = otio.adapters.read_from_file(path)
        tl = Timeline(self.rec, name=(options or {}).get("timelineName", src.name), fps=self.project.timeline.fps,
                      start_tc_frames=self.project.timeline.start, duration=self.project.timeline.duration)
        tl.tracks = [[TimelineItem(c.name, tl.start + c.range_in_parent().start_time.to_frames(),
                                   tl.start + c.range_in_parent().end_time_exclusive().to_frames(),
                                   MediaPoolItem(c.media_reference.target_url, {}))
                      for c in track.find_clips()] for track in src.video_tracks()]
        tl.source = src
        self.project.timelines.append(tl)
        return tl

    def AppendToTimeline(self, infos):
        self.rec.log("AppendToTimeline", infos)
        tl = self.project.timeline
        placed = []
        for info in infos:
            assert set(info) <= CLIP_INFO_KEYS, set(info) - CLIP_INFO_KEYS
            track = info["trackIndex"]
            if not 1 <= track <= tl.GetTrackCount("video"):
                return []  # Resolve does not create tracks here
            frames = int(info["endFrame"]) - int(info["startFrame"]) + 1
            start = int(info["recordFrame"])
            if any(i.GetStart() < start + frames and i.GetEnd() > start for i in tl.tracks[track - 1]):
                return []
            item = TimelineItem(info["mediaPoolItem"].GetName(), start, start + frames, info["mediaPoolItem"])
            tl.tracks[track - 1].append(item)
            placed.append(item)
        return placed


class Project:
    FORMATS = {"QuickTime": "mov", "MP4": "mp4", "EXR": "exr"}
    CODECS = {"mov": {"Apple ProRes 422 HQ": "ProRes422HQ", "Apple ProRes 4444": "ProRes4444",
                      "Apple ProRes 4444 XQ": "ProRes4444XQ", "H.264": "H264"},
              "mp4": {"H.264": "H264"}, "exr": {"RGB half (ZIP)": "RGBHalfZIP"}}

    def __init__(self, rec, timeline):
        self.rec, self.timeline = rec, timeline
        self.timelines = [timeline]
        self.format_codec = {"format": "mp4", "codec": "H264"}
        self.mode = 0
        self.settings: dict = {}
        self.jobs: dict[str, dict] = {}
        self.polls_left = 0
        self.media_pool = MediaPool(rec, self)

    def GetCurrentTimeline(self):
        return self.timeline

    def GetSetting(self, name=None):
        """Project settings (colour management keys set by tests in ``project_settings``)."""
        return getattr(self, "project_settings", {}).get(name, "")

    def GetMediaPool(self):
        return self.media_pool

    def GetRenderFormats(self):
        return dict(self.FORMATS)

    def GetRenderCodecs(self, fmt):
        return dict(self.CODECS.get(fmt, {}))

    def GetCurrentRenderFormatAndCodec(self):
        return dict(self.format_codec)

    def SetCurrentRenderFormatAndCodec(self, fmt, codec):
        self.rec.log("SetCurrentRenderFormatAndCodec", fmt, codec)
        if fmt not in self.FORMATS.values() or codec not in self.CODECS.get(fmt, {}).values():
            return False
        self.format_codec = {"format": fmt, "codec": codec}
        return True

    def GetCurrentRenderMode(self):
        return self.mode

    def SetCurrentRenderMode(self, mode):
        self.rec.log("SetCurrentRenderMode", mode)
        self.mode = mode
        return mode in (0, 1)

    def SetRenderSettings(self, settings):
        self.rec.log("SetRenderSettings", dict(settings))
        if set(settings) - RENDER_KEYS:
            return False
        tl = self.timeline
        for key in ("MarkIn", "MarkOut"):
            if key in settings and not tl.GetStartFrame() <= settings[key] < tl.GetEndFrame():
                return False  # outside the timeline
        self.settings.update(settings)
        return True

    def AddRenderJob(self):
        job = f"job-{len(self.jobs) + 1}"
        self.jobs[job] = {"settings": dict(self.settings), "format": dict(self.format_codec), "mode": self.mode,
                          "status": "Ready"}
        self.rec.log("AddRenderJob", job)
        return job

    def DeleteRenderJob(self, job):
        self.rec.log("DeleteRenderJob", job)
        return self.jobs.pop(job, None) is not None

    def StartRendering(self, jobs, interactive=False):
        from cinescale_post.testing import make_clip

        self.rec.log("StartRendering", list(jobs), interactive)
        for job in jobs:
            j = self.jobs[job]
            s = j["settings"]
            assert j["mode"] == 1 and j["format"]["format"] == "mov"
            first, last = s["MarkIn"], s["MarkOut"]
            os.makedirs(s["TargetDir"], exist_ok=True)
            name = s["CustomName"] + ".mov"
            make_clip(os.path.join(s["TargetDir"], name), frames=last - first + 1, size=(48, 32),
                      rate=Fraction(self.timeline.fps), timecode=_tc(first, self.timeline.fps), content="index")
            j.update(status="Complete", file=name)
        self.polls_left = 2
        return True

    def IsRenderingInProgress(self):
        self.polls_left -= 1
        return self.polls_left >= 0

    def StopRendering(self):
        self.rec.log("StopRendering")

    def GetRenderJobStatus(self, job):
        j = self.jobs[job]
        if self.polls_left >= 0:
            return {"JobStatus": "Rendering", "CompletionPercentage": 50}
        return {"JobStatus": j["status"], "CompletionPercentage": 100 if j["status"] == "Complete" else 0}

    def GetRenderJobList(self):
        return [{"JobId": k, "TargetDir": v["settings"]["TargetDir"], "OutputFilename": v.get("file", ""),
                 "MarkIn": v["settings"]["MarkIn"], "MarkOut": v["settings"]["MarkOut"]}
                for k, v in self.jobs.items()]


class ProjectManager:
    def __init__(self, project):
        self.project = project

    def GetCurrentProject(self):
        return self.project


class Resolve:
    EXPORT_OTIO = 27  # an opaque constant, as Resolve's are

    def __init__(self, **timeline_kw):
        self.rec = Recorder()
        self.timeline = Timeline(self.rec, **timeline_kw)
        self.project = Project(self.rec, self.timeline)

    def GetProjectManager(self):
        return ProjectManager(self.project)
