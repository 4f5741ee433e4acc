// Two audio tracks follow one muted video: only the selected one is audible; play, pause,
// seeking and speed changes of the video are mirrored to it, and drift above 80 ms is corrected.
(function () {
  "use strict";
  var video = document.getElementById("video");
  if (!video) return;
  var tracks = {
    original: document.getElementById("track-original"),
    aligned: document.getElementById("track-aligned"),
  };
  var active = "original";

  function current() { return tracks[active]; }

  function follow(audio) {
    if (!audio) return;
    if (Math.abs(audio.currentTime - video.currentTime) > 0.08) audio.currentTime = video.currentTime;
    audio.playbackRate = video.playbackRate;
    if (video.paused) { audio.pause(); } else { audio.play().catch(function () {}); }
  }

  function select(name) {
    Object.keys(tracks).forEach(function (key) {
      if (key !== name && tracks[key]) tracks[key].pause();
    });
    active = name;
    var audio = current();
    if (audio) { audio.currentTime = video.currentTime; follow(audio); }
  }

  video.muted = true;
  ["play", "pause", "seeked", "ratechange"].forEach(function (ev) {
    video.addEventListener(ev, function () { follow(current()); });
  });
  video.addEventListener("timeupdate", function () {
    var audio = current();
    if (audio && !video.paused && Math.abs(audio.currentTime - video.currentTime) > 0.08) {
      audio.currentTime = video.currentTime;
    }
  });
  // The video's own sound stays off; its volume slider sets the tracks' volume.
  video.addEventListener("volumechange", function () {
    Object.keys(tracks).forEach(function (key) { if (tracks[key]) tracks[key].volume = video.volume; });
    if (!video.muted) video.muted = true;
  });
  document.querySelectorAll('input[name="track"]').forEach(function (input) {
    input.addEventListener("change", function () { if (input.checked) select(input.value); });
  });
})();
