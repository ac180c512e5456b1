//! Import planning: whether a camera buffer can be queued on the encoder's OUTPUT queue as it
//! is (`V4L2_MEMORY_DMABUF`, no CPU copy), and if not, why, in words for the log.

use std::os::fd::RawFd;

use super::sys::{self, fourcc_name};
use crate::camera::libcamera_support::Layout;
use crate::camera::DmaBufPlane;

/// A camera buffer layout as a V4L2 pixel format, for handing the camera's buffer to a V4L2
/// encoder as it is. The packed RGB names are swapped between the two worlds: libcamera (DRM)
/// names the word order, V4L2 the byte order, so libcamera's `BGR888` (bytes R, G, B) is
/// V4L2's `RGB24`.
pub fn layout_fourcc(layout: Layout) -> u32 {
    match layout {
        Layout::Yuv420 => sys::PIX_FMT_YUV420,
        Layout::Nv12 => sys::PIX_FMT_NV12,
        Layout::Yuyv => sys::PIX_FMT_YUYV,
        Layout::Rgb888 => sys::PIX_FMT_BGR24,
        Layout::Bgr888 => sys::PIX_FMT_RGB24,
    }
}

/// How the camera lays out its buffers: what the OUTPUT queue is set to when it imports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawLayout {
    /// V4L2 pixel format, e.g. [`sys::PIX_FMT_RGB24`] for libcamera's `BGR888`.
    pub fourcc: u32,
    pub width: u32,
    pub height: u32,
    /// Bytes per line of the first plane.
    pub stride: u32,
}

/// How pictures reach the encoder's OUTPUT queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputPath {
    /// The camera's dma-buf is queued as it is (`V4L2_MEMORY_DMABUF`): no CPU copy.
    DmaBufImport,
    /// I420 copied into the device's own mmap'ed buffers; `why` says why not an import.
    CopyI420 { why: String },
}

impl InputPath {
    /// `dma-buf import` or `copy (why)`, for logs and reports.
    pub fn describe(&self) -> String {
        match self {
            InputPath::DmaBufImport => "dma-buf import".into(),
            InputPath::CopyI420 { why } => format!("copy ({why})"),
        }
    }
}

/// Why the OUTPUT format the device settled on cannot carry the camera's buffers as they
/// are, or None when it can (same format, size, single plane, and line stride).
pub fn layout_mismatch(
    want: &RawLayout,
    got_fourcc: u32,
    got_width: u32,
    got_height: u32,
    got_planes: u8,
    got_stride: u32,
) -> Option<String> {
    if got_fourcc != want.fourcc {
        return Some(format!(
            "the encoder does not take {} (it offered {})",
            fourcc_name(want.fourcc),
            fourcc_name(got_fourcc)
        ));
    }
    if (got_width, got_height) != (want.width, want.height) {
        return Some(format!(
            "the encoder wants {got_width}x{got_height} for a {}x{} camera",
            want.width, want.height
        ));
    }
    if got_planes != 1 {
        return Some(format!(
            "the encoder wants {got_planes} memory planes, the camera gives one buffer"
        ));
    }
    if got_stride != want.stride {
        return Some(format!(
            "the encoder wants lines of {got_stride} bytes, the camera's are {}",
            want.stride
        ));
    }
    None
}

/// The dma-buf and the byte count to queue for a camera buffer whose planes are `planes`,
/// when the encoder reads `sizeimage` bytes from one buffer: every plane must live in the
/// same dma-buf, the first at offset 0, and together they must cover `sizeimage` (a
/// multi-planar camera buffer is then laid out as the encoder's single-buffer format is,
/// which [`layout_mismatch`] checked through the stride).
pub fn import_plan(planes: &[DmaBufPlane], sizeimage: u32) -> Result<(RawFd, u32), String> {
    let first = planes.first().ok_or("the camera buffer has no planes")?;
    if first.offset != 0 {
        return Err(format!(
            "the camera's picture starts at offset {} in its dma-buf",
            first.offset
        ));
    }
    if planes.iter().any(|p| p.fd != first.fd) {
        return Err("the camera's planes are in separate dma-bufs".into());
    }
    let extent = planes
        .iter()
        .map(|p| u64::from(p.offset) + u64::from(p.length))
        .max()
        .unwrap_or(0);
    if extent < u64::from(sizeimage) {
        return Err(format!(
            "the camera's buffer holds {extent} bytes, the encoder reads {sizeimage}"
        ));
    }
    Ok((first.fd, extent.min(u64::from(u32::MAX)) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_rgb_names_swap_between_libcamera_and_v4l2() {
        // vimc's BGR888 is bytes R, G, B: V4L2 RGB24 ("RGB3").
        assert_eq!(layout_fourcc(Layout::Bgr888), sys::PIX_FMT_RGB24);
        assert_eq!(layout_fourcc(Layout::Rgb888), sys::PIX_FMT_BGR24);
        assert_eq!(layout_fourcc(Layout::Yuv420), sys::PIX_FMT_YUV420);
    }

    const VIMC: RawLayout = RawLayout {
        fourcc: sys::PIX_FMT_RGB24,
        width: 160,
        height: 120,
        stride: 480,
    };

    #[test]
    fn a_matching_output_format_allows_import() {
        assert_eq!(
            layout_mismatch(&VIMC, sys::PIX_FMT_RGB24, 160, 120, 1, 480),
            None
        );
    }

    #[test]
    fn output_format_mismatches_say_what_differs() {
        let why = layout_mismatch(&VIMC, sys::PIX_FMT_YUV420, 160, 120, 1, 160).unwrap();
        assert!(
            why.contains("does not take RGB3") && why.contains("YU12"),
            "{why}"
        );
        let why = layout_mismatch(&VIMC, sys::PIX_FMT_RGB24, 160, 120, 1, 512).unwrap();
        assert!(why.contains("512") && why.contains("480"), "{why}");
        let why = layout_mismatch(&VIMC, sys::PIX_FMT_RGB24, 160, 128, 1, 480).unwrap();
        assert!(why.contains("160x128"), "{why}");
        let why = layout_mismatch(&VIMC, sys::PIX_FMT_RGB24, 160, 120, 3, 480).unwrap();
        assert!(why.contains("3 memory planes"), "{why}");
    }

    #[test]
    fn one_dma_buf_covering_the_picture_is_imported_whole() {
        let plane = |fd, offset, length| DmaBufPlane { fd, offset, length };
        assert_eq!(import_plan(&[plane(9, 0, 57_600)], 57_600), Ok((9, 57_600)));
        // YUV420 as three planes of one dma-buf (the Pi's ISP): queued as one buffer.
        let yuv = [
            plane(5, 0, 4096),
            plane(5, 4096, 1024),
            plane(5, 5120, 1024),
        ];
        assert_eq!(import_plan(&yuv, 6144), Ok((5, 6144)));
    }

    #[test]
    fn buffers_the_encoder_cannot_read_in_place_are_refused_with_the_reason() {
        let plane = |fd, offset, length| DmaBufPlane { fd, offset, length };
        let err = import_plan(&[plane(9, 0, 1000)], 57_600).unwrap_err();
        assert!(err.contains("1000") && err.contains("57600"), "{err}");
        let err = import_plan(&[plane(9, 64, 57_600)], 57_600).unwrap_err();
        assert!(err.contains("offset 64"), "{err}");
        let err = import_plan(&[plane(5, 0, 4096), plane(6, 0, 2048)], 6144).unwrap_err();
        assert!(err.contains("separate dma-bufs"), "{err}");
        assert!(import_plan(&[], 1).is_err());
    }

    #[test]
    fn input_paths_describe_themselves() {
        assert_eq!(InputPath::DmaBufImport.describe(), "dma-buf import");
        let copy = InputPath::CopyI420 {
            why: "the encoder does not take RGB3".into(),
        };
        assert_eq!(copy.describe(), "copy (the encoder does not take RGB3)");
    }
}
